/*
 * fuzz_seeds: the binary seeds of fuzz/corpus that need the project's own
 * encoders; fuzz/mkcorpus runs it (and mcdbd, for a real segment and hint).
 *   build-fuzz/fuzz/fuzz_seeds meta-dir DIR      DIR/META for a new log with
 *                                                fuzz_log_id (mcdbd adopts it)
 *   build-fuzz/fuzz/fuzz_seeds meta OUT          META variants: OUT/meta-*
 *   build-fuzz/fuzz/fuzz_seeds record OUT        records mcdbd rarely writes
 *                                                at offset 0: OUT/rec-*
 *   build-fuzz/fuzz/fuzz_seeds repl OUT          frames and conversations:
 * OUT/repl-*
 */
#include "fuzz.h"
#include "log/logdir.h"
#include "log/record.h"
#include "repl/repl_int.h"

#include <errno.h>

static const char *out_dir;

static void
emit(const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", out_dir, name);
    if (fuzz_write_file(path, p, n) != 0) {
        perror(path);
        exit(1);
    }
}

static void
fresh_meta(struct logdir_meta *m)
{
    memset(m, 0, sizeof(*m));
    m->has_log_id = true;
    memcpy(m->log_id, fuzz_log_id, 16);
    m->role = LOGDIR_PRIMARY;
    m->nepochs = 1;
    m->epochs[0] =
        (struct logdir_epoch){1, logdir_first_epoch_id(fuzz_log_id), 0};
}

static int
save(const char *dir, const struct logdir_meta *m)
{
    char err[512];
    if (logdir_meta_save(dir, m, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    return 0;
}

/* A META variant saved in a scratch dir, then kept as OUT/name. */
static void
emit_meta(const char *name, const struct logdir_meta *m)
{
    char dir[] = "/tmp/mcdb-seeds-XXXXXX", path[64];
    if (!mkdtemp(dir) || save(dir, m))
        exit(1);
    snprintf(path, sizeof(path), "%s/META", dir);
    FILE *f = fopen(path, "rb");
    char text[8192];
    size_t n = f ? fread(text, 1, sizeof(text), f) : 0;
    if (f)
        fclose(f);
    unlink(path);
    rmdir(dir);
    emit(name, text, n);
}

static void
metas(void)
{
    struct logdir_meta m;
    fresh_meta(&m);
    emit_meta("meta-primary", &m);

    m.role = LOGDIR_REPLICA;
    snprintf(m.primary, sizeof(m.primary), "127.0.0.1:11211");
    emit_meta("meta-replica", &m);

    struct logdir_meta r = {.role = LOGDIR_REPLICA};
    snprintf(r.primary, sizeof(r.primary), "[::1]:11311");
    emit_meta("meta-replica-before-first-sync", &r);

    fresh_meta(&m);
    for (uint64_t i = 1; i < 6; i++)
        m.epochs[m.nepochs++] = (struct logdir_epoch){
            i + 1, 0x9a01000000000000ull + i * 0x1111, i * 1048576};
    emit_meta("meta-promoted", &m);

    static const char legacy[] = "mcdb-meta 1\n"
                                 "log_id 6d6364622d66757a7a2d6c6f672d6964\n"
                                 "format 1\nrole primary\nepoch 1\n";
    emit("meta-legacy", legacy, sizeof(legacy) - 1);
}

static void
records(void)
{
    uint64_t seed = rec_log_seed(fuzz_log_id);
    char buf[512];
    char v[REC_SEG_HEADER_VLEN];
    struct rec r;
    size_t n;

    struct rec_seg_footer f = {.records = 7, .end = 4096};
    rec_seg_footer_encode(v, &f);
    r = (struct rec){.type = REC_SEG_FOOTER,
                     .vlen = REC_SEG_FOOTER_VLEN,
                     .val = v,
                     .time_ms = 1700000000000ull};
    n = rec_encode(buf, &r, seed, 0);
    emit("rec-footer", buf, n);

    struct rec_drop d = {.base = 0, .end = 65536};
    rec_drop_encode(v, &d);
    r = (struct rec){.type = REC_DROP,
                     .vlen = REC_DROP_VLEN,
                     .val = v,
                     .cas = 9,
                     .time_ms = 1700000000000ull};
    n = rec_encode(buf, &r, seed, 0);
    emit("rec-drop", buf, n);

    r = (struct rec){.type = REC_FLUSH,
                     .exptime = 1700000100,
                     .cas = 12,
                     .time_ms = 1700000000000ull};
    n = rec_encode(buf, &r, seed, 0);
    /* and a skippable record of a future type right after it */
    r = (struct rec){.type = REC_TYPE_SKIPPABLE | 9,
                     .klen = 3,
                     .vlen = 5,
                     .key = "abc",
                     .val = "hello"};
    n += rec_encode(buf + n, &r, seed, n);
    emit("rec-flush-skippable", buf, n);

    struct rec_seg_header h = {
        .version = REC_FORMAT_VERSION, .base = 0, .cas_floor = 1};
    memcpy(h.log_id, fuzz_log_id, 16);
    rec_seg_header_encode(v, &h);
    r = (struct rec){
        .type = REC_SEG_HEADER, .vlen = REC_SEG_HEADER_VLEN, .val = v};
    n = rec_encode(buf, &r, seed, 0);
    r = (struct rec){.type = REC_DELETE, .klen = 3, .key = "foo", .cas = 2};
    n += rec_encode(buf + n, &r, seed, n);
    r = (struct rec){.type = REC_TOUCH,
                     .klen = 3,
                     .key = "bar",
                     .exptime = 1700003600,
                     .cas = 3};
    n += rec_encode(buf + n, &r, seed, n);
    emit("rec-header-delete-touch", buf, n);
}

static size_t
frame(char *out, uint8_t type, uint64_t off, const void *body, size_t n)
{
    rs_header(out, type, (uint32_t)n, off);
    if (n)
        memcpy(out + RS_HDR, body, n);
    return RS_HDR + n;
}

static void
repl(void)
{
    static char body[RS_MAX_BODY], conv[16384];
    char one[RS_HDR + RS_MAX_BODY];
    size_t n, c = 0;

    struct rs_hello h = {.version = 1, .auth = true};
    memset(h.nonce, 0x5a, RS_NONCE);
    n = frame(one, RS_HELLO, 0, body, rs_hello_encode(body, &h));
    emit("repl-hello", one, n);
    memcpy(conv + c, one, n), c += n;

    struct rs_ident m = {.version = 1,
                         .port = 11212,
                         .has_log = true,
                         .start = 0,
                         .end = 8192,
                         .last_off = 8000,
                         .last_sum = 0x1234567890abcdefull,
                         .nepochs = 2};
    memset(m.nonce, 0x33, RS_NONCE);
    memset(m.mac, 0x44, RS_MAC);
    memcpy(m.log_id, fuzz_log_id, 16);
    m.epochs[0] =
        (struct logdir_epoch){1, logdir_first_epoch_id(fuzz_log_id), 0};
    m.epochs[1] = (struct logdir_epoch){2, 0x9a01000000000077ull, 4096};
    n = frame(one, RS_IDENT, 0, body, rs_ident_encode(body, &m));
    emit("repl-ident", one, n);
    memcpy(conv + c, one, n), c += n;

    struct rs_plan p = {
        .mode = RS_CONTINUE, .fork = 8192, .from = 8192, .nepochs = 2};
    memcpy(p.log_id, fuzz_log_id, 16);
    memcpy(p.epochs, m.epochs, sizeof(m.epochs));
    snprintf(p.why, sizeof(p.why), "the replica's log is a prefix of ours");
    n = frame(one, RS_PLAN, 0, body, rs_plan_encode(body, &p));
    emit("repl-plan-continue", one, n);
    memcpy(conv + c, one, n), c += n;

    p.mode = RS_FULL;
    p.keep_old = true;
    p.copy_end = 1 << 20;
    p.from = 0;
    snprintf(p.why, sizeof(p.why), "the primary no longer has offset 0");
    n = frame(one, RS_PLAN, 0, body, rs_plan_encode(body, &p));
    emit("repl-plan-full", one, n);

    static const char data[] = "log bytes, in order, from the plan's from";
    n = frame(one, RS_DATA, 8192, data, sizeof(data) - 1);
    emit("repl-data", one, n);
    memcpy(conv + c, one, n), c += n;

    uint64_t clock = 1700000000000ull;
    n = frame(one, RS_PING, 8233, &clock, 8);
    emit("repl-ping", one, n);
    memcpy(conv + c, one, n), c += n;

    n = frame(one, RS_ACK, 8233, NULL, 0);
    emit("repl-ack", one, n);
    memcpy(conv + c, one, n), c += n;

    static const char why[] = "replica is ahead of the primary";
    n = frame(one, RS_ERROR, 0, why, sizeof(why) - 1);
    emit("repl-error", one, n);
    memcpy(conv + c, one, n), c += n;
    emit("repl-conversation", conv, c);
}

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s meta-dir|meta|record|repl DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[2];
    if (strcmp(argv[1], "meta-dir") == 0) {
        struct logdir_meta m;
        fresh_meta(&m);
        return save(argv[2], &m);
    } else if (strcmp(argv[1], "meta") == 0) {
        metas();
    } else if (strcmp(argv[1], "record") == 0) {
        records();
    } else if (strcmp(argv[1], "repl") == 0) {
        repl();
    } else {
        fprintf(stderr, "%s: unknown kind %s\n", argv[0], argv[1]);
        return 2;
    }
    return 0;
}
