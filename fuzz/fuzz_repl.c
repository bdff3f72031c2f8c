/*
 * fuzz_repl: the replication stream's decoders (src/repl/repl_int.h), as a
 * primary reads a replica's frames and a replica its primary's: rs_decode()
 * over the input as a stream of frames, and the body decoders
 * rs_hello_decode(), rs_ident_decode() and rs_plan_decode() on the payload
 * of every frame, whatever its type.
 *
 * Checked:
 *   - a frame is RS_HDR + len bytes with its payload just after the header,
 *     of a known type and within RS_MAX_PAYLOAD; an error is RS_E_TYPE or
 *     RS_E_LENGTH; "need more" (0) with a whole header has set f->len to a
 *     frame longer than what is there (rs_recv sizes its buffer from it);
 *   - every shorter prefix of a whole frame is "need more", never a frame;
 *   - a body that decodes keeps its rules (version-independent ones: epochs
 *     in order and at most LOGDIR_MAX_EPOCHS, start <= end, a plan's mode
 *     and reason) and survives encode-then-decode unchanged, in no more
 *     bytes than it came in.
 */
#include "fuzz.h"
#include "log/logdir.h"
#include "repl/repl_int.h"

static void
check_epochs(const struct logdir_epoch *e, size_t n)
{
    FUZZ_CHECK(n <= LOGDIR_MAX_EPOCHS);
    for (size_t i = 1; i < n; i++)
        FUZZ_CHECK(e[i].seq > e[i - 1].seq && e[i].start >= e[i - 1].start);
}

static int
epochs_eq(const struct logdir_epoch *a, size_t na, const struct logdir_epoch *b,
          size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (a[i].seq != b[i].seq || a[i].id != b[i].id ||
            a[i].start != b[i].start)
            return 0;
    return 1;
}

static struct rs_frame
body(uint8_t type, const char *p, size_t n)
{
    return (struct rs_frame){.type = type, .len = (uint32_t)n, .payload = p};
}

static void
check_bodies(const struct rs_frame *f)
{
    static char out[RS_MAX_BODY];
    struct rs_frame g;

    struct rs_hello h, h2;
    if (rs_hello_decode(f, &h) == 0) {
        size_t n = rs_hello_encode(out, &h);
        FUZZ_CHECK(n <= f->len && n <= RS_MAX_BODY);
        g = body(RS_HELLO, out, n);
        FUZZ_CHECK(rs_hello_decode(&g, &h2) == 0);
        FUZZ_CHECK(h2.version == h.version && h2.auth == h.auth &&
                   memcmp(h2.nonce, h.nonce, RS_NONCE) == 0);
    }

    static struct rs_ident m, m2;
    if (rs_ident_decode(f, &m) == 0) {
        FUZZ_CHECK(m.start <= m.end);
        check_epochs(m.epochs, m.nepochs);
        size_t n = rs_ident_encode(out, &m);
        FUZZ_CHECK(n <= f->len && n <= RS_MAX_BODY);
        g = body(RS_IDENT, out, n);
        FUZZ_CHECK(rs_ident_decode(&g, &m2) == 0);
        FUZZ_CHECK(m2.version == m.version && m2.port == m.port &&
                   m2.has_log == m.has_log && m2.start == m.start &&
                   m2.end == m.end && m2.last_off == m.last_off &&
                   m2.last_sum == m.last_sum &&
                   memcmp(m2.nonce, m.nonce, RS_NONCE) == 0 &&
                   memcmp(m2.mac, m.mac, RS_MAC) == 0 &&
                   memcmp(m2.log_id, m.log_id, 16) == 0);
        FUZZ_CHECK(epochs_eq(m.epochs, m.nepochs, m2.epochs, m2.nepochs));
    }

    static struct rs_plan p, p2;
    if (rs_plan_decode(f, &p) == 0) {
        FUZZ_CHECK(p.mode == RS_CONTINUE || p.mode == RS_FULL);
        FUZZ_CHECK(p.mode != RS_FULL || p.copy_end >= p.from);
        FUZZ_CHECK(p.nepochs >= 1);
        FUZZ_CHECK(memchr(p.why, '\0', sizeof(p.why)) != NULL);
        check_epochs(p.epochs, p.nepochs);
        size_t n = rs_plan_encode(out, &p);
        FUZZ_CHECK(n <= f->len && n <= RS_MAX_BODY);
        g = body(RS_PLAN, out, n);
        FUZZ_CHECK(rs_plan_decode(&g, &p2) == 0);
        FUZZ_CHECK(
            p2.mode == p.mode && p2.keep_old == p.keep_old &&
            p2.fork == p.fork && p2.from == p.from &&
            p2.copy_end == p.copy_end && memcmp(p2.mac, p.mac, RS_MAC) == 0 &&
            memcmp(p2.log_id, p.log_id, 16) == 0 && strcmp(p2.why, p.why) == 0);
        FUZZ_CHECK(epochs_eq(p.epochs, p.nepochs, p2.epochs, p2.nepochs));
    }
}

/* A shorter prefix of a whole frame, alone in a buffer of its own size. */
static void
check_prefix(const char *p, size_t k)
{
    char *copy = malloc(k ? k : 1);
    struct rs_frame f;
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, p, k);
    FUZZ_CHECK(rs_decode(copy, k, &f) == 0);
    free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t left = size;

    for (;;) {
        struct rs_frame f = {.len = UINT32_MAX};
        long rc = rs_decode(p, left, &f);
        if (rc == 0) {
            if (left >= RS_HDR)
                FUZZ_CHECK(f.len != UINT32_MAX &&
                           RS_HDR + (size_t)f.len > left);
            break;
        }
        if (rc < 0) {
            FUZZ_CHECK(rc == RS_E_TYPE || rc == RS_E_LENGTH);
            FUZZ_CHECK(strcmp(rs_strerror((int)rc), "unknown stream error") !=
                       0);
            break;
        }
        size_t n = (size_t)rc;
        FUZZ_CHECK(n == RS_HDR + (size_t)f.len && n <= left);
        FUZZ_CHECK(f.len <= RS_MAX_PAYLOAD);
        FUZZ_CHECK(f.payload == p + RS_HDR);
        FUZZ_CHECK(strcmp(rs_type_name(f.type), "unknown") != 0);

        char hdr[RS_HDR];
        rs_header(hdr, f.type, f.len, f.off);
        FUZZ_CHECK(hdr[0] == p[0] && memcmp(hdr + 4, p + 4, 12) == 0);

        check_prefix(p, 0);
        check_prefix(p, 1);
        check_prefix(p, RS_HDR - 1);
        if (n > RS_HDR) {
            check_prefix(p, RS_HDR);
            check_prefix(p, n - 1);
        }
        /* the payload alone, so that ASan sees a read past its length */
        char *payload = malloc(f.len ? f.len : 1);
        FUZZ_CHECK(payload != NULL);
        memcpy(payload, f.payload, f.len);
        f.payload = payload;
        check_bodies(&f);
        free(payload);
        p += n;
        left -= n;
    }
    return 0;
}
