/*
 * raw: the log as a byte stream, for replication. A primary reads it by
 * offset (store_span: a segment file and a position, pinned) and sends it;
 * a replica appends what it receives verbatim (store_append_raw), so that
 * its files are its primary's, byte for byte (invariant 8 in log_int.h).
 *
 * Verbatim append, record by record:
 *   1. the record must decode at its own offset with this log's seed (the
 *      replica has its primary's log id), so a byte changed on the way, or
 *      a stream from another log, is refused before it is written;
 *   2. a SEG_HEADER may only come where a segment starts (no segment yet,
 *      or the last one sealed) and must name this log and its own offset:
 *      it opens the next segment file, whatever this store's
 *      --segment-size;
 *   3. any other record must fall in the open segment; a SEG_FOOTER seals
 *      it (the writer fdatasyncs it once written);
 *   4. the bytes go to the append buffer as they are, the writer thread
 *      writes and syncs them like any other (group commit), and then the
 *      record is applied to the index by the same apply_record() that
 *      recovery uses, in live mode. One thread appends for a replica, so
 *      log order stays index order.
 * A batch takes the buffer lock once for as many records as fit.
 */
#include "log/log_int.h"
#include "util/say.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RAW_BATCH 64

uint64_t
store_log_start(store_t *s)
{
    pthread_mutex_lock(&s->seg_mu);
    uint64_t start = s->nsegs ? s->segs[0]->seg_base : s->end;
    pthread_mutex_unlock(&s->seg_mu);
    return start;
}

uint64_t
store_log_end(store_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t end = s->end;
    pthread_mutex_unlock(&s->mu);
    return end;
}

uint64_t
store_durable(store_t *s)
{
    return atomic_load(&s->durable);
}

/* Rules 2 and 3 for the record r at off (mu held). */
static int
raw_fits(struct store *s, const struct rec *r, uint64_t off, char *err,
         size_t errlen)
{
    struct seg *a = s->active;
    bool open = a && !a->seg_end;
    if (r->type != REC_SEG_HEADER) {
        if (open)
            return 0;
        snprintf(err, errlen,
                 "offset %" PRIu64 ": a record where a segment "
                 "header should start the next segment",
                 off);
        return STORE_CORRUPT;
    }
    if (open || !rec_seg_header_is(r, s->log_id, off)) {
        snprintf(err, errlen, "offset %" PRIu64 ": a segment header %s", off,
                 open ? "inside an open segment" : "of another log or offset");
        return STORE_CORRUPT;
    }
    return 0;
}

/*
 * Append the records recs[0, n) (whole and checked, the bytes at p, the
 * first at log offset off) under one hold of mu; returns how many went in
 * (fewer when the buffer is full: the caller applies them and comes back).
 */
static int
raw_append_batch(struct store *s, const char *p, uint64_t off,
                 const struct rec *recs, const size_t *sizes, size_t n,
                 size_t *done, char *err, size_t errlen)
{
    *done = 0;
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (off != s->end) {
        snprintf(err, errlen,
                 "bytes for offset %" PRIu64 " but the log ends "
                 "at %" PRIu64,
                 off, s->end);
        rc = STORE_CORRUPT;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (s->fill_len + sizes[i] > s->buf_cap) {
            if (i > 0)
                break; /* apply these first; the writer makes room */
            rc = log_wait_room_locked(s, sizes[i]);
            if (rc)
                break;
        }
        rc = raw_fits(s, &recs[i], off, err, errlen);
        if (rc == 0 && recs[i].type == REC_SEG_HEADER)
            rc = log_open_next_locked(s, off);
        if (rc)
            break;
        log_append_bytes_locked(s, p, sizes[i], 1);
        s->last_rec = off;
        if (recs[i].type == REC_SEG_FOOTER) {
            s->active->seg_end = s->end;
            pthread_cond_signal(&s->compact_cv); /* its hint is due */
        }
        p += sizes[i];
        off += sizes[i];
        (*done)++;
    }
    pthread_mutex_unlock(&s->mu);
    if (*done)
        atomic_fetch_add(&s->st_records, *done);
    return rc;
}

int
store_append_raw(store_t *s, uint64_t off, const void *buf, size_t len,
                 size_t *used, char *err, size_t errlen)
{
    const char *p = buf;
    size_t pos = 0;
    int rc = 0;
    *used = 0;
    if (!atomic_load(&s->replica)) {
        snprintf(err, errlen, "only a replica appends its primary's bytes");
        return STORE_BAD_CONFIG;
    }
    while (rc == 0 && pos < len) {
        struct rec recs[RAW_BATCH];
        size_t sizes[RAW_BATCH], n = 0, bytes = 0;
        while (n < RAW_BATCH && pos + bytes < len) {
            uint64_t at = off + pos + bytes;
            long k = rec_decode(p + pos + bytes, len - pos - bytes, s->log_seed,
                                at, &recs[n]);
            if (k == REC_E_SHORT && len - pos - bytes >= REC_HDR_SIZE) {
                uint64_t need = rec_size(recs[n].klen, recs[n].vlen);
                if (need + 1024 > s->buf_cap) {
                    snprintf(err, errlen,
                             "offset %" PRIu64 ": a record of "
                             "%" PRIu64 " bytes, larger than this replica "
                             "can buffer; start it with a --max-item-size "
                             "(-I) as large as its primary's",
                             at, need);
                    rc = STORE_TOO_LARGE;
                }
                break;
            }
            if (k == REC_E_SHORT ||
                (k == REC_E_ZERO && len - pos - bytes < REC_HDR_SIZE))
                break; /* the rest of this record is still on its way */
            if (k < 0) {
                snprintf(err, errlen, "offset %" PRIu64 ": %s", at,
                         rec_strerror((int)k));
                rc = STORE_CORRUPT;
                break;
            }
            if ((size_t)k + 1024 > s->buf_cap) {
                snprintf(err, errlen,
                         "offset %" PRIu64 ": a record of %ld "
                         "bytes, larger than this replica can buffer; start "
                         "it with a --max-item-size (-I) as large as its "
                         "primary's",
                         at, k);
                rc = STORE_TOO_LARGE;
                break;
            }
            sizes[n++] = (size_t)k;
            bytes += (size_t)k;
        }
        if (n == 0)
            break;
        size_t done;
        int arc = raw_append_batch(s, p + pos, off + pos, recs, sizes, n, &done,
                                   err, errlen);
        for (size_t i = 0; i < done; i++) {
            apply_record(&s->live, &recs[i], off + pos);
            pos += sizes[i];
        }
        if (arc)
            rc = arc;
        else if (done < n)
            continue; /* the buffer was full: decode the rest again */
    }
    *used = pos;
    return rc;
}

/* ---- the last record, to check that two logs agree where they meet ---- */

uint64_t
store_last_record(store_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t off = s->last_rec;
    pthread_mutex_unlock(&s->mu);
    return off;
}

int
store_record_checksum(store_t *s, uint64_t off, uint64_t end,
                      uint64_t *checksum)
{
    if (end <= off || end - off > s->buf_cap)
        return STORE_NOT_FOUND;
    size_t len = end - off;
    char *buf = malloc(len);
    if (!buf)
        return STORE_NOMEM;
    int rc = STORE_NOT_FOUND;
    struct seg *g = seg_pin(s, off);
    if (g && (log_read_buffered(s, off, len, buf) ||
              pread(g->seg_fd, buf, len, (off_t)(off - g->seg_base)) ==
                  (ssize_t)len)) {
        struct rec r;
        if (rec_decode(buf, len, s->log_seed, off, &r) == (long)len) {
            memcpy(checksum, buf, 8);
            rc = 0;
        }
    }
    if (g)
        seg_unpin(g);
    free(buf);
    return rc;
}

/* ---- reading by offset ---- */

int
store_span(store_t *s, uint64_t off, uint64_t upto, struct store_span *sp)
{
    uint64_t durable = atomic_load(&s->durable);
    if (upto > durable)
        upto = durable;
    *sp = (struct store_span){.fd = -1};
    struct seg *g = seg_pin(s, off);
    if (!g)
        return STORE_NOT_FOUND;
    uint64_t end = g->seg_end && g->seg_end < upto ? g->seg_end : upto;
    sp->fd = g->seg_fd;
    sp->pos = off - g->seg_base;
    sp->len = end > off ? end - off : 0;
    sp->pin = g;
    return 0;
}

void
store_span_done(struct store_span *sp)
{
    if (sp->pin)
        seg_unpin(sp->pin);
    sp->pin = NULL;
}

/* ---- holds ---- */

int
store_hold(store_t *s, uint64_t off)
{
    int h = -ENOSPC;
    pthread_mutex_lock(&s->seg_mu);
    for (int i = 0; i < STORE_MAX_HOLDS && h < 0; i++)
        if (s->holds[i] == UINT64_MAX) {
            s->holds[i] = off;
            h = i;
        }
    pthread_mutex_unlock(&s->seg_mu);
    return h;
}

void
store_hold_move(store_t *s, int h, uint64_t off)
{
    pthread_mutex_lock(&s->seg_mu);
    s->holds[h] = off;
    pthread_mutex_unlock(&s->seg_mu);
}

void
store_hold_release(store_t *s, int h)
{
    store_hold_move(s, h, UINT64_MAX);
}

uint64_t
store_held_from(struct store *s)
{
    uint64_t min = UINT64_MAX;
    for (int i = 0; i < STORE_MAX_HOLDS; i++)
        if (s->holds[i] < min)
            min = s->holds[i];
    return min;
}
