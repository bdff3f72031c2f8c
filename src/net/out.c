/*
 * out: a connection's replies; the model is described in out.h. This file
 * owns the queue's items and their memory, the replies that wait for an
 * acknowledgement, and the values read from the log.
 */
#include "net/net_int.h"

#include "net/binary.h"
#include "net/vcache.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/panic.h"
#include "util/say.h"

#include <sodium.h>

#define NET_SMALL_VALUE 1024 /* values up to this are copied into the reply */
#define NET_FREE_ITEMS 1024  /* recycled items kept per worker */

#define VALUE_END "\r\nEND\r\n" /* a value's line end, then a get's END */

_Static_assert(NET_TEXT_CHUNK ==
                   1u << (NET_CACHE_MIN_SHIFT + NET_CACHE_CLASSES - 1),
               "text chunks are the largest recycled buffers");

/* ---- items and their memory ---- */

static struct oitem *
item_alloc(struct worker *w)
{
    struct oitem *it = w->free_items;
    if (it) {
        w->free_items = it->next;
        w->n_free_items--;
    } else {
        it = malloc(sizeof(*it));
        if (!it)
            MCDB_PANIC("out of memory for a reply item");
    }
    memset(it, 0, offsetof(struct oitem, inl));
    it->text = it->inl;
    it->cap = NET_ITEM_INLINE;
    it->acct = sizeof(*it);
    return it;
}

static size_t
class_size(unsigned cls)
{
    return (size_t)1 << (NET_CACHE_MIN_SHIFT + cls);
}

/*
 * Give it a buffer (it->owned) of at least size bytes; returns its size.
 * Up to NET_TEXT_CHUNK it is one of the worker's recycled buffers, the
 * smallest class that fits: a get of a small value asks for one per hit.
 */
static size_t
item_own(struct worker *w, struct oitem *it, size_t size)
{
    unsigned cls = 0;
    while (cls < NET_CACHE_CLASSES && class_size(cls) < size)
        cls++;
    if (cls == NET_CACHE_CLASSES) {
        it->owned = malloc(size);
        if (!it->owned)
            MCDB_PANIC("out of memory for a %zu-byte reply", size);
        it->own = OWN_MALLOC;
        return size;
    }
    struct buf_cache *k = &w->caches[cls];
    void *p = k->head;
    if (p) {
        k->head = *(void **)p;
        k->n--;
    } else if (!(p = malloc(class_size(cls)))) {
        MCDB_PANIC("out of memory for a %zu-byte reply", class_size(cls));
    }
    it->owned = p;
    it->own = OWN_CACHED;
    it->cls = (uint8_t)cls;
    return class_size(cls);
}

static void
item_release(struct worker *w, struct oitem *it)
{
    if (it->vref)
        vcache_unref(it->vref);
    free(it->dbuf);
    if (it->own == OWN_CACHED &&
        (w->caches[it->cls].n + 1) * class_size(it->cls) <= NET_CACHE_BYTES) {
        struct buf_cache *k = &w->caches[it->cls];
        *(void **)it->owned = k->head;
        k->head = it->owned;
        k->n++;
    } else if (it->own != OWN_NONE) {
        free(it->owned);
    }
    if (w->n_free_items < NET_FREE_ITEMS) {
        it->next = w->free_items;
        w->free_items = it;
        w->n_free_items++;
    } else {
        free(it);
    }
}

void
conn_free_caches(struct worker *w)
{
    while (w->free_items) {
        struct oitem *it = w->free_items;
        w->free_items = it->next;
        free(it);
    }
    w->n_free_items = 0;
    for (unsigned cls = 0; cls < NET_CACHE_CLASSES; cls++) {
        struct buf_cache *k = &w->caches[cls];
        while (k->head) {
            void *p = k->head;
            k->head = *(void **)p;
            free(p);
        }
        k->n = 0;
    }
}

static size_t
item_size(const struct oitem *it)
{
    return it->len + it->blob_len + it->trail;
}

/* ---- the output queue ---- */

static void
out_push(struct conn *c, struct oitem *it)
{
    it->conn = c;
    it->next = NULL;
    if (c->oq_tail)
        c->oq_tail->next = it;
    else
        c->oq_head = it;
    c->oq_tail = it;
    c->out_bytes += it->acct;
}

static void
out_pop(struct conn *c)
{
    struct oitem *it = c->oq_head;
    c->oq_head = it->next;
    if (!c->oq_head)
        c->oq_tail = NULL;
    c->out_bytes -= it->acct;
    item_release(c->w, it);
}

/* Free ready items at the head that have nothing left to send. */
void
out_trim(struct conn *c)
{
    while (c->oq_head && c->oq_head->state == OI_READY &&
           c->oq_head->sent == item_size(c->oq_head))
        out_pop(c);
}

/* n bytes were sent: they are the first unsent bytes of the queue. */
void
out_consume(struct conn *c, size_t n)
{
    while (n && c->oq_head) {
        struct oitem *it = c->oq_head;
        size_t left = item_size(it) - it->sent;
        if (n < left) {
            it->sent += (uint32_t)n;
            return;
        }
        n -= left;
        out_pop(c);
    }
}

/* A new ready text item for at least `need` bytes. */
static struct oitem *
out_new_text(struct conn *c, size_t need)
{
    struct worker *w = c->w;
    struct oitem *it = item_alloc(w);
    if (need > NET_ITEM_INLINE) {
        /* A whole chunk: more replies are likely to follow. */
        it->cap = (uint32_t)item_own(
            w, it, need < NET_TEXT_CHUNK ? NET_TEXT_CHUNK : need);
        it->text = it->owned;
        it->acct += it->cap;
    }
    out_push(c, it);
    return it;
}

void
out_text(struct conn *c, const char *s, size_t n)
{
    struct oitem *t = c->oq_tail;
    bool ready_text = t && t->state == OI_READY && !t->blob && !t->trail;
    if (n == 0)
        return;
    if (!ready_text || t->cap - t->len < n)
        /* Small first, then whole chunks once replies keep coming. */
        t = out_new_text(c,
                         ready_text && n < NET_TEXT_CHUNK ? NET_TEXT_CHUNK : n);
    memcpy(t->text + t->len, s, n);
    t->len += (uint32_t)n;
    conn_mark_dirty(c);
}

void
out_str(struct conn *c, const char *s)
{
    out_text(c, s, strlen(s));
}

void
out_printf(struct conn *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        out_text(c, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

void
out_bin(struct conn *c, struct bin_res *h, const void *ext, size_t extlen,
        const void *key, size_t klen, const void *val, size_t vlen)
{
    char hdr[BIN_HEADER];
    h->extlen = (uint8_t)extlen;
    h->klen = (uint16_t)klen;
    h->bodylen = (uint32_t)(extlen + klen + vlen);
    bin_put_header(hdr, h);
    out_text(c, hdr, sizeof(hdr));
    out_text(c, ext, extlen);
    out_text(c, key, klen);
    out_text(c, val, vlen);
}

/* Replace an item's text (an ack's outcome). */
void
out_set_text(struct conn *c, struct oitem *it, const char *s, size_t n)
{
    if (n > it->cap) {
        MCDB_ASSERT(it->own == OWN_NONE); /* only inline texts are replaced */
        it->owned = malloc(n);
        if (!it->owned)
            MCDB_PANIC("out of memory for a %zu-byte reply", n);
        it->own = OWN_MALLOC;
        it->text = it->owned;
        it->cap = (uint32_t)n;
        it->acct += n;
        c->out_bytes += n;
    }
    memcpy(it->text, s, n);
    it->len = (uint32_t)n;
}

/* ---- writes waiting for their ack ---- */

static void
waiter_add(struct conn *c)
{
    struct worker *w = c->w;
    if (c->waiting)
        return;
    c->waiting = true;
    c->wprev = NULL;
    c->wnext = w->waiters;
    if (w->waiters)
        w->waiters->wprev = c;
    w->waiters = c;
}

static void
waiter_remove(struct conn *c)
{
    if (!c->waiting)
        return;
    c->waiting = false;
    if (c->wprev)
        c->wprev->wnext = c->wnext;
    else
        c->w->waiters = c->wnext;
    if (c->wnext)
        c->wnext->wprev = c->wprev;
    c->wnext = c->wprev = NULL;
}

void
out_wait_ack_bin(struct conn *c, uint64_t ack, const char *ok, size_t n,
                 enum out_policy policy, const struct out_bin *b)
{
    struct oitem *t = c->oq_tail;
    /* Consecutive noreply writes share one item: the later ack covers the
     * earlier ones, since one connection's writes are appended in order.
     * (Not meta's quiet ones: each failure of those is a reply.) */
    if (policy == OUT_NEVER && t && t->state == OI_WAIT_ACK &&
        t->policy == OUT_NEVER) {
        if (ack > t->ack)
            t->ack = ack;
        return;
    }
    struct oitem *it = item_alloc(c->w);
    it->state = OI_WAIT_ACK;
    it->ack = ack;
    it->policy = (uint8_t)policy;
    if (b) {
        it->bin = true;
        it->binid = *b;
    }
    out_push(c, it);
    if (policy == OUT_ALWAYS)
        out_set_text(c, it, ok, n);
    c->n_wait_ack++;
    waiter_add(c);
}

void
out_wait_ack(struct conn *c, uint64_t ack, const char *ok, size_t n,
             enum out_policy policy)
{
    out_wait_ack_bin(c, ack, ok, n, policy, NULL);
}

static void
ack_settle(struct conn *c, struct oitem *it, int status)
{
    it->state = OI_READY;
    c->n_wait_ack--;
    if (it->policy == OUT_NEVER || (status > 0 && it->policy != OUT_ALWAYS)) {
        it->len = 0;
    } else if (status < 0) {
        char buf[512];
        size_t n = cmd_failure_text(c, status, it->bin ? &it->binid : NULL, buf,
                                    sizeof(buf));
        out_set_text(c, it, buf, n);
    }
}

/* Release the replies at the front of the queue whose acks have come. */
void
conn_resolve(struct conn *c)
{
    store_t *s = c->w->net->store;
    bool changed = false;
    if (c->n_wait_ack == 0) { /* nothing to settle: skip the walk */
        waiter_remove(c);
        return;
    }
    for (struct oitem *it = c->oq_head; it; it = it->next) {
        if (it->state == OI_READY)
            continue;
        if (it->state == OI_WAIT_READ)
            break;
        int st = store_ack_status(s, it->ack);
        if (st == 0)
            break;
        ack_settle(c, it, st);
        changed = true;
    }
    if (c->n_wait_ack == 0)
        waiter_remove(c);
    if (changed)
        conn_mark_dirty(c);
}

/* ---- values read from the log ---- */

/*
 * Fold the small ready reply that follows a just-completed read (a later
 * request's reply, or an END that out_end could not attach) into the read's
 * text, so that the two leave as one buffer.
 * Nothing after a waiting item has been sent, so the next one is whole.
 */
static void
read_fold_next(struct conn *c, struct oitem *it)
{
    struct oitem *nx = it->next;
    if (!nx || it->blob || nx->state != OI_READY || nx->own != OWN_NONE ||
        nx->blob || nx->trail || it->cap - it->len < nx->len)
        return;
    memcpy(it->text + it->len, nx->text, nx->len);
    it->len += nx->len;
    it->next = nx->next;
    if (c->oq_tail == nx)
        c->oq_tail = it;
    c->out_bytes -= nx->acct;
    item_release(c->w, nx);
}

/*
 * "VALUE <key> <flags> <bytes>[ <cas>]\r\n" at dst; returns its length, at
 * most klen + VALUE_LINE_MAX. The key has no control characters (the parser
 * checked it), so this is what printf's "%.*s %u %u %llu" would write.
 */
#define VALUE_LINE_MAX (6 + 1 + 10 + 1 + 10 + 1 + NET_U64_DIGITS + 2)
_Static_assert(VALUE_LINE_MAX + 5 <= 64, "out_start_read's klen + 64");

static size_t
value_line(char *dst, const char *key, size_t klen, const struct store_item *si,
           bool want_cas)
{
    char *p = dst;
    memcpy(p, "VALUE ", 6);
    p += 6;
    memcpy(p, key, klen);
    p += klen;
    *p++ = ' ';
    p += net_fmt_u64(p, si->flags);
    *p++ = ' ';
    p += net_fmt_u64(p, si->vlen);
    if (want_cas) {
        *p++ = ' ';
        p += net_fmt_u64(p, si->cas);
    }
    memcpy(p, "\r\n", 2);
    p += 2;
    return (size_t)(p - dst);
}

/* ---- meta replies ---- */

static char *
put_u64(char *p, uint64_t v)
{
    return p + net_fmt_u64(p, v);
}

/* The key as it came: text, or base64 (a key of PROTO_MAX_KEY bytes is 340
 * base64 characters). */
static char *
put_key(char *p, const struct out_meta *m)
{
    if (!m->ret->b64) {
        memcpy(p, m->key, m->klen);
        return p + m->klen;
    }
    size_t n =
        sodium_base64_ENCODED_LEN(m->klen, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(p, n, (const unsigned char *)m->key, m->klen,
                      sodium_base64_VARIANT_ORIGINAL);
    return p + n - 1;
}

static uint64_t
seconds_since(uint64_t time_ms, uint32_t now)
{
    uint64_t t = time_ms / 1000;
    return t < now ? now - t : 0;
}

/* me: memcached's debug line; cls is always 1 (mcdb has no slab classes)
 * and size is the record's length in the log. */
static size_t
me_line(char *dst, const struct out_meta *m, uint32_t now)
{
    char *p = dst;
    memcpy(p, "ME ", 3);
    p = put_key(p + 3, m);
    long long exp = m->exptime == 0 ? -1 : (long long)m->exptime - now;
    p += snprintf(
        p, 128, " exp=%lld la=%llu cas=%llu fetch=%s cls=1 size=%u\r\n", exp,
        (unsigned long long)seconds_since(m->time_ms, now),
        (unsigned long long)m->cas, m->fetched ? "yes" : "no", m->size);
    return (size_t)(p - dst);
}

size_t
out_meta_line_max(const struct out_meta *m)
{
    /* "VA " and 10 digits, each flag " f" and 20 digits (O: its token; k:
     * the key, maybe in base64, and " b"), " Z X W", "\r\n"; the ME line */
    size_t n = 13 + 6 + 2 + 22 * (size_t)m->ret->n + m->ret->olen;
    if (m->code == OUT_ME || memchr(m->ret->flags, 'k', m->ret->n))
        n += 100 + 2 * m->klen;
    return n;
}

bool
out_meta_needs_clock(const struct out_meta *m)
{
    if (m->code == OUT_ME)
        return true;
    for (unsigned i = 0; i < m->ret->n; i++)
        if (m->ret->flags[i] == 't' || m->ret->flags[i] == 'l')
            return true;
    return false;
}

size_t
out_meta_line(char *dst, const struct out_meta *m, uint32_t now)
{
    static const char words[][3] = {
        [OUT_VA] = "VA", [OUT_HD] = "HD", [OUT_EN] = "EN",
        [OUT_NF] = "NF", [OUT_NS] = "NS", [OUT_EX] = "EX"};
    if (m->code == OUT_ME)
        return me_line(dst, m, now);
    char *p = dst;
    memcpy(p, words[m->code], 2);
    p += 2;
    if (m->code == OUT_VA) {
        *p++ = ' ';
        p = put_u64(p, m->vlen);
    }
    for (unsigned i = 0; i < m->ret->n; i++) {
        char f = m->ret->flags[i];
        if (!(m->show & PROTO_MF(f)))
            continue;
        *p++ = ' ';
        if (f == 'O') {
            memcpy(p, m->ret->opaque, m->ret->olen);
            p += m->ret->olen;
            continue;
        }
        *p++ = f;
        switch (f) {
        case 's':
            p = put_u64(p, m->vlen);
            break;
        case 't':
            if (m->exptime == 0) {
                memcpy(p, "-1", 2);
                p += 2;
            } else {
                p = put_u64(p, m->exptime > now ? m->exptime - now : 0);
            }
            break;
        case 'c':
            p = put_u64(p, m->cas);
            break;
        case 'f':
            p = put_u64(p, m->flags);
            break;
        case 'l':
            p = put_u64(p, seconds_since(m->time_ms, now));
            break;
        case 'h':
            *p++ = m->fetched ? '1' : '0';
            break;
        case 'k':
            p = put_key(p, m);
            if (m->ret->b64) {
                memcpy(p, " b", 2);
                p += 2;
            }
            break;
        default:
            break;
        }
    }
    /* memcached's order: Z first, so that a client never reads W with Z */
    if (m->token_out) {
        memcpy(p, " Z", 2);
        p += 2;
    }
    if (m->stale) {
        memcpy(p, " X", 2);
        p += 2;
    }
    if (m->won) {
        memcpy(p, " W", 2);
        p += 2;
    }
    memcpy(p, "\r\n", 2);
    return (size_t)(p + 2 - dst);
}

/* Room for a binary reply's header, flags, key, and a miss's body. */
#define BIN_HIT_MAX(klen) (BIN_HEADER + 4 + (klen) + 16)

/* A binary get's reply once its record is read (rc: the read's status). */
static void
read_done_bin(struct oitem *it, int rc, const char *key,
              const struct store_item *si)
{
    const struct out_bin *b = &it->binid;
    struct bin_res h = {.opcode = b->opcode, .opaque = b->opaque};
    size_t klen = b->with_key ? it->klen : 0;
    if (rc != 0) {
        it->len = 0;
        if (b->quiet)
            return;
        /* a miss: getk's body is its key, the others' "Not found" */
        const char *body = klen ? key : bin_status_text(BIN_KEY_ENOENT);
        h.status = BIN_KEY_ENOENT;
        h.klen = (uint16_t)klen;
        h.bodylen = (uint32_t)(klen ? klen : strlen(body));
        bin_put_header(it->text, &h);
        memcpy(it->text + BIN_HEADER, body, h.bodylen);
        it->len = BIN_HEADER + h.bodylen;
        return;
    }
    size_t vlen = b->no_value ? 0 : si->vlen;
    h.extlen = 4;
    h.klen = (uint16_t)klen;
    h.bodylen = (uint32_t)(4 + klen + vlen);
    h.cas = si->cas;
    char *p = it->text;
    bin_put_header(p, &h);
    p += BIN_HEADER;
    p[0] = (char)(si->flags >> 24);
    p[1] = (char)(si->flags >> 16);
    p[2] = (char)(si->flags >> 8);
    p[3] = (char)si->flags;
    memcpy(p + 4, key, klen);
    size_t len = BIN_HEADER + 4 + klen;
    if (len + vlen <= it->cap) {
        if (vlen)
            memcpy(it->text + len, si->value, vlen);
        len += vlen;
    } else {
        it->blob = si->value;
        it->blob_len = (uint32_t)vlen;
    }
    it->len = (uint32_t)len;
}

/* The reply to a get whose item si is (rc 0) or that missed. */
static void
read_reply(struct conn *c, struct oitem *it, int rc, const char *key,
           const struct store_item *si0)
{
    store_t *s = c->w->net->store;
    struct store_item si = *si0;
    it->state = OI_READY;
    if (it->bin) {
        read_done_bin(it, rc, key, &si);
        read_fold_next(c, it);
        return;
    }
    if (rc != 0) {
        if (it->end) {
            memcpy(it->text, "END\r\n", 5);
            it->len = 5;
        } else if (it->meta) {
            it->meta->code = OUT_EN;
            it->meta->show = PROTO_MF('O') | PROTO_MF('k');
            it->meta->token_out = it->meta->stale = it->meta->won = false;
            it->len = (uint32_t)out_meta_line(it->text, it->meta, 0);
        }
        read_fold_next(c, it);
        return;
    }
    size_t len, trail = it->end ? 7 : 2;
    if (it->meta) {
        it->meta->flags = si.flags;
        it->meta->time_ms = si.time_ms;
        it->meta->size = it->loc.len;
        len = out_meta_line(it->text, it->meta,
                            out_meta_needs_clock(it->meta) ? store_now(s) : 0);
        if (it->meta->code != OUT_VA) {
            it->len = (uint32_t)len;
            read_fold_next(c, it);
            return;
        }
    } else {
        len = value_line(it->text, key, it->klen, &si, it->want_cas);
    }
    if (len + si.vlen + trail <= it->cap) {
        memcpy(it->text + len, si.value, si.vlen);
        memcpy(it->text + len + si.vlen, VALUE_END, trail);
        len += si.vlen + trail;
    } else {
        it->blob = si.value;
        it->blob_len = si.vlen;
        it->trail = (uint8_t)trail;
    }
    it->len = (uint32_t)len;
    read_fold_next(c, it);
}

/* The record of item it is in it->owned (nread bytes): verify it, keep a
 * copy of the item in the worker's cache if it was read before, make the
 * reply. */
static void
read_done(struct conn *c, struct oitem *it, size_t nread)
{
    store_t *s = c->w->net->store;
    const char *key = (const char *)it->owned + it->loc.len;
    struct store_item si = {0};
    int rc =
        store_read_finish(s, &it->loc, it->owned, nread, key, it->klen, &si);
    if (rc != 0 && rc != STORE_NOT_FOUND)
        say(SAY_WARN, "reading %.*s: %s; answered as a miss", (int)it->klen,
            key, store_strerror(rc));
    /* admitted on its second read since written, and only if that was
     * lately (vcache_seen): a key read once (a scan), or random reads of
     * far more keys than the cache holds, do not churn it */
    bool again = vcache_seen(&c->w->vc, it->loc.hash);
    if (rc == 0 && again && it->loc.fetched && it->loc.gen == c->w->vc_gen) {
        struct worker *w = c->w;
        unsigned evicted =
            vcache_insert(&w->vc, it->loc.hash, it->loc.off, si.cas, si.time_ms,
                          si.flags, key, it->klen, si.value, si.vlen);
        CNT_ADD(w, value_cache_evictions, evicted);
        atomic_store_explicit(&w->vc_bytes, w->vc.vc_bytes,
                              memory_order_relaxed);
    }
    read_reply(c, it, rc, key, &si);
}

/*
 * --direct-reads: whether all of [pos, pos + len) of fd is in the page
 * cache, asked with cachestat(2) (Linux 6.5), which starts no read. (A
 * read with RWF_NOWAIT would say so too, but starts reading the page it
 * misses into the page cache: twice the disk reads.) True when it cannot
 * tell: the read then goes through the page cache, as without the option.
 */
struct mcdb_cachestat_range {
    uint64_t off, len;
};
struct mcdb_cachestat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
static bool
page_cached(int fd, uint64_t pos, uint32_t len)
{
    static atomic_bool missing; /* an older kernel: stop asking */
    if (atomic_load_explicit(&missing, memory_order_relaxed))
        return true;
    struct mcdb_cachestat_range r = {pos, len};
    struct mcdb_cachestat cs;
    if (syscall(__NR_cachestat, fd, &r, &cs, 0) != 0) {
        if (errno == ENOSYS &&
            !atomic_exchange_explicit(&missing, true, memory_order_relaxed))
            say(SAY_WARN, "--direct-reads: this kernel has no cachestat(2) "
                          "(Linux 6.5): every read goes through the page "
                          "cache");
        return true;
    }
    uint64_t pages = ((pos + len + 4095) >> 12) - (pos >> 12);
    return cs.nr_cache >= pages;
}

/* Read len bytes of fd at pos into buf for it; conn_on_read gets them. */
static void
submit_read(struct conn *c, struct oitem *it, int fd, void *buf, unsigned len,
            uint64_t pos)
{
    struct io_uring_sqe *sqe = worker_sqe(c->w);
    io_uring_prep_read(sqe, fd, buf, len, pos);
    io_uring_sqe_set_data64(sqe, ud_make(it, UD_READ));
    c->refs++;
}

/*
 * --direct-reads: the record of it is not (all) in the page cache. Read
 * the blocks that hold it from the disk, past the page cache (O_DIRECT:
 * whole DIRECT_ALIGN blocks into a buffer aligned to them), so that reads
 * of more data than memory neither evict what is hot nor read ahead what
 * nobody asked for. False: no memory for the buffer.
 */
#define DIRECT_ALIGN 4096u
static bool
read_direct(struct conn *c, struct oitem *it)
{
    uint64_t start = it->loc.pos & ~(uint64_t)(DIRECT_ALIGN - 1);
    uint64_t end = (it->loc.pos + it->loc.len + DIRECT_ALIGN - 1) &
                   ~(uint64_t)(DIRECT_ALIGN - 1);
    if (posix_memalign(&it->dbuf, DIRECT_ALIGN, end - start) != 0) {
        it->dbuf = NULL;
        return false;
    }
    submit_read(c, it, it->loc.dfd, it->dbuf, (unsigned)(end - start), start);
    CNT_INC(c->w, value_reads_direct);
    return true;
}

/* read_direct's read is done (res: bytes from the block boundary): move
 * the record to where read_done expects it; returns its bytes. */
static int
direct_done(struct oitem *it, int res)
{
    size_t skip = it->loc.pos & (DIRECT_ALIGN - 1);
    size_t got = res > 0 && (size_t)res > skip ? (size_t)res - skip : 0;
    if (got > it->loc.len)
        got = it->loc.len;
    memcpy(it->owned, (char *)it->dbuf + skip, got);
    free(it->dbuf);
    it->dbuf = NULL;
    return res < 0 ? res : (int)got;
}

/*
 * Queue the reply to one hit of a get: the item is taken from the worker's
 * cache, or the record is copied from the engine's append buffer now, or
 * read from its segment file by the ring. One buffer holds the record
 * (unless cached), then the key (to verify the record), then the reply's
 * text ("VALUE ..." line, and the value itself when small).
 */
static void
start_read(struct conn *c, const struct store_loc *loc, const char *key,
           size_t klen, bool want_cas, const struct out_meta *m,
           const struct out_bin *b)
{
    struct worker *w = c->w;
    if (loc->gen != w->vc_gen &&
        loc->gen == store_log_generation(w->net->store)) {
        vcache_clear(&w->vc); /* a replica's log was reloaded */
        w->vc_gen = loc->gen;
    }
    struct vc_entry *e =
        loc->gen == w->vc_gen
            ? vcache_find(&w->vc, loc->hash, loc->off, loc->cas, key, klen)
            : NULL;
    if (e)
        CNT_INC(w, value_cache_hits);
    else if (w->vc.vc_cap)
        CNT_INC(w, value_cache_misses);
    /* the VALUE line and room for "END\r\n", or a meta line, or a binary
     * header */
    size_t hdr = b ? BIN_HIT_MAX(klen) : m ? out_meta_line_max(m) : klen + 64;
    size_t small = loc->vlen <= NET_SMALL_VALUE ? loc->vlen + 2 : 0;
    size_t rec = e ? 0 : loc->len;
    size_t at = rec + klen; /* the text, or the meta descriptor */
    size_t desc = 0;
    if (m) {
        at = (at + 7) & ~(size_t)7;
        desc = sizeof(struct out_meta) + sizeof(struct proto_ret);
    }
    size_t size = at + desc + hdr + small;
    struct oitem *it = item_alloc(w);
    item_own(w, it, size);
    char *buf = it->owned;
    memcpy(buf + rec, key, klen);
    if (m) {
        struct out_meta *d = (struct out_meta *)(buf + at);
        struct proto_ret *r = (struct proto_ret *)(d + 1);
        *d = *m;
        *r = *m->ret;
        d->ret = r;
        d->key = buf + rec;
        it->meta = d;
    }

    it->state = OI_WAIT_READ;
    it->text = buf + at + desc;
    it->cap = (uint32_t)(hdr + small);
    it->loc = *loc;
    it->klen = (uint16_t)klen;
    it->want_cas = want_cas;
    if (b) {
        it->bin = true;
        it->binid = *b;
    }
    it->acct += size;
    if (e && !small) /* sent from the entry: it counts as the conn's */
        it->acct += e->vlen;
    out_push(c, it);

    if (e) {
        store_read_skip(w->net->store, &it->loc);
        struct store_item si = {.flags = e->flags,
                                .exptime = loc->exptime,
                                .cas = loc->cas,
                                .time_ms = e->time_ms,
                                .key = e->data,
                                .klen = e->klen,
                                .value = vc_value(e),
                                .vlen = e->vlen};
        read_reply(c, it, 0, buf, &si);
        if (it->blob) { /* sent from the entry: keep it until then */
            vcache_ref(e);
            it->vref = e;
        }
        conn_mark_dirty(c);
        return;
    }
    if (store_read_buffered(w->net->store, &it->loc, buf) == 1) {
        read_done(c, it, loc->len);
        conn_mark_dirty(c);
        return;
    }
    if (loc->dfd >= 0 && !page_cached(loc->fd, loc->pos, loc->len) &&
        read_direct(c, it))
        return;
    submit_read(c, it, loc->fd, buf, loc->len, loc->pos);
}

void
out_start_read(struct conn *c, const struct store_loc *loc, const char *key,
               size_t klen, bool want_cas, const struct out_meta *m)
{
    start_read(c, loc, key, klen, want_cas, m, NULL);
}

void
out_start_read_bin(struct conn *c, const struct store_loc *loc, const char *key,
                   size_t klen, const struct out_bin *b)
{
    start_read(c, loc, key, klen, false, NULL, b);
}

/*
 * The END of a get. When the last reply queued is a value still being
 * read, END becomes part of that reply (read_done writes it after the
 * value) instead of an item of its own.
 */
void
out_end(struct conn *c)
{
    struct oitem *t = c->oq_tail;
    if (t && t->state == OI_WAIT_READ && !t->end)
        t->end = true;
    else
        out_text(c, "END\r\n", 5);
}

void
conn_on_read(struct oitem *it, int res)
{
    struct conn *c = it->conn;
    c->refs--;
    if (it->dbuf)
        res = direct_done(it, res);
    if (res < 0)
        say(SAY_WARN, "reading a value from the log: %s", strerror(-res));
    read_done(c, it, res > 0 ? (size_t)res : 0);
    if (c->state == CONN_CLOSING) {
        conn_mark_dirty(c); /* worker_flush frees it */
        return;
    }
    conn_resolve(c);
    conn_mark_dirty(c);
}

/* Append the unsent bytes of it (after skip) to iov; returns the count. */
static int
item_iov(const struct oitem *it, size_t skip, struct iovec *iov, int n)
{
    const struct iovec parts[3] = {
        {it->text, it->len},
        {(void *)it->blob, it->blob_len},
        {VALUE_END, it->trail},
    };
    for (int i = 0; i < 3; i++) {
        if (parts[i].iov_len <= skip) {
            skip -= parts[i].iov_len;
            continue;
        }
        iov[n].iov_base = (char *)parts[i].iov_base + skip;
        iov[n].iov_len = parts[i].iov_len - skip;
        n++;
        skip = 0;
    }
    return n;
}

void
out_forget_acks(struct conn *c)
{
    waiter_remove(c);
}

int
out_iov(struct conn *c, struct iovec *iov, int max)
{
    int n = 0;
    struct oitem *it = c->oq_head;
    size_t skip = it ? it->sent : 0;
    c->send_last = NULL;
    for (; it && it->state == OI_READY && n <= max - 3; it = it->next) {
        n = item_iov(it, skip, iov, n);
        skip = 0;
        c->send_last = it;
    }
    return n;
}

/*
 * Free the replies of closed c that will never be sent, but for those the
 * kernel may still touch: the ones in the send in flight (the front of the
 * queue up to c->send_last, all ready, so none of them can have been folded
 * away since) and those a read of the log is filling (freed when it
 * completes, with the connection).
 */
void
out_drop_unsent(struct conn *c)
{
    struct oitem *keep = NULL, *it = c->oq_head;
    if (c->send_busy && c->send_last) {
        for (keep = it; keep && keep != c->send_last; keep = keep->next)
            ;
        it = keep ? keep->next : NULL;
    }
    while (it) {
        struct oitem *next = it->next;
        if (it->state == OI_WAIT_READ) {
            if (keep)
                keep->next = it;
            else
                c->oq_head = it;
            keep = it;
        } else {
            if (it->state == OI_WAIT_ACK)
                c->n_wait_ack--;
            c->out_bytes -= it->acct;
            item_release(c->w, it);
        }
        it = next;
    }
    if (keep)
        keep->next = NULL;
    else
        c->oq_head = NULL;
    c->oq_tail = keep;
}

void
out_clear(struct conn *c)
{
    while (c->oq_head)
        out_pop(c);
}
