/*
 * fuzz_hint: the hint decoder, hint_read() (src/log/hint.h), on a hint file
 * made of the input, as start-up reads the hint of every sealed segment.
 *
 * Input: byte 0 is control, bytes 1-8 the segment's size (u64 LE) that the
 * hint is checked against, the rest the hint file, written as
 * DIR/<base>.hint in a scratch directory (tmpfs when there is one).
 *   control bit 0: give the file its correct trailer checksum (seeded with
 *                  fuzz_log_id's seed, as hint.c computes it), so that
 *                  mutations reach the structure checks and the walk;
 *   control bit 1: base is the one the file's header names (else 0);
 *   control bits 4-7: the callback stops the walk at that entry (0: never).
 * Checked: nothing crashes or leaks; the callback sees no entry unless the
 * whole hint is valid (hint.c checks every entry before the first call) and
 * sees exactly the count the trailer gives; every key and value pointer
 * lies inside the mapped file (hint_open/hint_walk again when hint_read
 * found the hint valid), a PUT
 * has no value, the result is 0, a HINT_E_* code, or the callback's stop
 * value. hint_entries() reads the same file without a crash.
 */
#include "fuzz.h"
#include "log/hint.h"

#include <xxhash.h>

#define STOP 12345

struct walk {
    const char *lo, *hi; /* the mapped file, when known */
    uint64_t calls;
    uint64_t stop_at;
    uint64_t sum;
};

static int
visit(void *arg, const struct rec *r, uint64_t off)
{
    struct walk *w = arg;
    (void)off;
    w->calls++;
    FUZZ_CHECK(r->klen == 0 || r->key != NULL);
    FUZZ_CHECK(r->type != REC_PUT || r->val == NULL);
    if (w->lo) {
        if (r->klen)
            FUZZ_CHECK(r->key >= w->lo && r->klen <= (size_t)(w->hi - r->key));
        if (r->val)
            FUZZ_CHECK(r->val >= w->lo && r->vlen <= (size_t)(w->hi - r->val));
    }
    /* touch every byte the entry hands out */
    for (size_t i = 0; i < r->klen; i++)
        w->sum += (unsigned char)r->key[i];
    for (size_t i = 0; r->val && i < r->vlen; i++)
        w->sum += (unsigned char)r->val[i];
    return w->calls == w->stop_at ? STOP : 0;
}

static int
known(int rc)
{
    return rc == 0 || rc == STOP || rc == HINT_E_MISSING ||
           rc == HINT_E_STALE || rc == HINT_E_CORRUPT;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    uint8_t control = data[0];
    uint64_t segsize = fuzz_le(data + 1, 8);
    size_t n = size - 9;
    uint8_t *file = malloc(n ? n : 1);
    FUZZ_CHECK(file != NULL);
    memcpy(file, data + 9, n);

    uint64_t seed = rec_log_seed(fuzz_log_id);
    if ((control & 1) && n >= 8) {
        uint64_t sum = XXH3_64bits_withSeed(file, n - 8, seed);
        memcpy(file + n - 8, &sum, 8);
    }
    uint64_t base = (control & 2) && n >= 40 ? fuzz_le(file + 32, 8) : 0;

    const char *dir = fuzz_dir();
    char path[512];
    hint_path(dir, base, path, sizeof(path));
    FUZZ_CHECK(fuzz_write_file(path, file, n) == 0);

    (void)hint_entries(dir, base, NULL);

    struct walk w = {.stop_at = control >> 4};
    int rc = hint_read(dir, fuzz_log_id, base, segsize, visit, &w);
    FUZZ_CHECK(known(rc));
    FUZZ_CHECK(strlen(hint_strerror(rc)) > 0);
    if (rc != 0 && rc != STOP)
        FUZZ_CHECK(w.calls == 0); /* no entry of a hint that fails */
    if (rc == STOP)
        FUZZ_CHECK(w.stop_at && w.calls == w.stop_at);

    /* hint_read is hint_open + hint_walk: a hint that passes its checks
     * again, knowing the mapping */
    struct hint h;
    int orc = rc == 0 || rc == STOP
                  ? hint_open(dir, fuzz_log_id, base, segsize, &h)
                  : rc;
    FUZZ_CHECK(known(orc));
    if (orc == 0) {
        uint64_t count;
        memcpy(&count, file + n - 16, 8);
        FUZZ_CHECK(h.count == count && h.len == n);
        struct walk w2 = {
            .lo = h.map, .hi = h.map + h.len, .stop_at = control >> 4};
        int wrc = hint_walk(&h, visit, &w2);
        FUZZ_CHECK(wrc == rc);
        FUZZ_CHECK(w2.calls == w.calls && w2.sum == w.sum);
        if (wrc == 0)
            FUZZ_CHECK(w2.calls == h.count);
        hint_close(&h);
    } else {
        FUZZ_CHECK(orc == rc);
    }

    unlink(path);
    free(file);
    return 0;
}
