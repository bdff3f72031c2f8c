/*
 * fuzz_meta: META parsing, logdir_meta_load() (src/log/logdir.h), on the
 * input written as DIR/META in a scratch directory (tmpfs when there is
 * one), as every start of mcdbd and every tool reads it.
 *
 * Checked: nothing crashes or leaks; the result is 0, STORE_CORRUPT (with
 * a message) or -errno; a META that loads keeps the rules dir.c states (a
 * log id unless it is a replica, a replica names its primary, at most
 * LOGDIR_MAX_EPOCHS epochs in order, the first one's id never 0 when there
 * is a log id), logdir_meta_read() agrees with it, and saving it with
 * logdir_meta_save() and loading that again gives back the same META.
 */
#include "fuzz.h"
#include "log/logdir.h"
#include "log/store.h"

#include <errno.h>

static void
check_meta(const struct logdir_meta *m)
{
    FUZZ_CHECK(m->role == LOGDIR_PRIMARY || m->role == LOGDIR_REPLICA);
    FUZZ_CHECK(m->has_log_id || m->role == LOGDIR_REPLICA);
    FUZZ_CHECK(memchr(m->primary, '\0', sizeof(m->primary)) != NULL);
    FUZZ_CHECK(m->role != LOGDIR_REPLICA || m->primary[0]);
    FUZZ_CHECK(m->nepochs <= LOGDIR_MAX_EPOCHS);
    FUZZ_CHECK(!m->has_log_id || m->nepochs >= 1);
    FUZZ_CHECK(!m->has_log_id || m->epochs[0].id != 0);
    for (size_t i = 1; i < m->nepochs; i++)
        FUZZ_CHECK(m->epochs[i].seq > m->epochs[i - 1].seq &&
                   m->epochs[i].start >= m->epochs[i - 1].start);
}

static int
meta_eq(const struct logdir_meta *a, const struct logdir_meta *b)
{
    if (a->has_log_id != b->has_log_id || a->role != b->role ||
        strcmp(a->primary, b->primary) != 0 || a->nepochs != b->nepochs)
        return 0;
    if (a->has_log_id && memcmp(a->log_id, b->log_id, 16) != 0)
        return 0;
    for (size_t i = 0; i < a->nepochs; i++)
        if (a->epochs[i].seq != b->epochs[i].seq ||
            a->epochs[i].id != b->epochs[i].id ||
            a->epochs[i].start != b->epochs[i].start)
            return 0;
    return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_dir();
    char path[512], err[512];
    snprintf(path, sizeof(path), "%s/META", dir);
    FUZZ_CHECK(fuzz_write_file(path, data, size) == 0);

    static struct logdir_meta m, back;
    err[0] = '\0';
    int rc = logdir_meta_load(dir, &m, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == STORE_CORRUPT || (rc < 0 && rc > -4096));
    if (rc != 0)
        FUZZ_CHECK(err[0] != '\0');

    uint8_t id[16];
    int rrc = logdir_meta_read(dir, id, err, sizeof(err));
    if (rc == 0 && m.has_log_id)
        FUZZ_CHECK(rrc == 0 && memcmp(id, m.log_id, 16) == 0);
    else if (rc == 0)
        FUZZ_CHECK(rrc == STORE_CORRUPT);
    else
        FUZZ_CHECK(rrc == rc);

    if (rc == 0) {
        check_meta(&m);
        FUZZ_CHECK(logdir_meta_save(dir, &m, err, sizeof(err)) == 0);
        int brc = logdir_meta_load(dir, &back, err, sizeof(err));
        if (brc != 0)
            fprintf(stderr, "the saved META does not load: %s\n", err);
        FUZZ_CHECK(brc == 0);
        FUZZ_CHECK(meta_eq(&m, &back));
    }
    unlink(path);
    return 0;
}
