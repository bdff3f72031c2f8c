/*
 * admin.c: memcached's admin commands that have nothing to act on in mcdb
 * (there are no slab classes, no LRU, no crawler, no log watchers, no
 * memory limit to move, and no remote shutdown). A client or a tool that
 * sends them must still meet memcached, not a bare ERROR that makes it
 * think the server is something else: each gets the reply memcached 1.6.18
 * gives for those arguments (proto_text.c: process_slabs_command,
 * process_lru_crawler_command, process_lru_command, process_watch_command,
 * process_memlimit_command, process_shutdown_command), and where memcached
 * would act, the reply memcached gives when that feature is off:
 *
 *   slabs reassign <src> <dst>   CLIENT_ERROR slab reassignment disabled
 *   slabs automove <0|1|2>       OK (other numbers ERROR, not a number
 *   slabs automove ratio <r>     CLIENT_ERROR bad command line format)
 *   lru_crawler crawl            CLIENT_ERROR lru crawler disabled
 *   lru_crawler metadump all|hash|<classes>: every live key, one line
 *                                each (cmd.c); mcdb's items are all in
 *                                class 1, so a list without 1 gets END
 *   lru_crawler enable           ERROR failed to start lru crawler thread
 *   lru_crawler disable          OK
 *   lru_crawler tocrawl|sleep N  OK after memcached's checks
 *   lru tune|mode|temp_ttl ...   OK after memcached's checks
 *   watch ...                    CLIENT_ERROR watch commands not allowed
 *   cache_memlimit <MB>          OK after memcached's checks
 *   shutdown ...                 ERROR: shutdown not enabled
 *
 * They change nothing. noreply is honoured where memcached honours it
 * (slabs automove, lru, watch, cache_memlimit). Pure, like the other
 * parsers: the reply is chosen here and the handler only sends it.
 */
#include "net/proto_int.h"

#include <stdlib.h>

/* memcached's safe_strtod: a whole token that strtod reads. */
static bool
tok_double(struct tok t, double *out)
{
    char buf[64];
    char *end;

    if (t.n == 0 || t.n >= sizeof(buf))
        return false;
    memcpy(buf, t.p, t.n);
    buf[t.n] = '\0';
    *out = strtod(buf, &end);
    return end == buf + t.n;
}

static bool
tok_u32(struct tok t, uint64_t *out)
{
    return proto_u64(t, UINT32_MAX, out);
}

static const char *
slabs(const struct line *l, struct proto_req *req)
{
    const struct tok *t = l->tok;
    uint64_t level;
    double ratio;

    if (l->ntok == 4 && tok_is(t[1], "reassign"))
        return "CLIENT_ERROR slab reassignment disabled";
    if (l->ntok < 3 || !tok_is(t[1], "automove"))
        return "ERROR";
    req->noreply = last_is_noreply(l);
    if (tok_is(t[2], "ratio"))
        return l->ntok >= 4 && tok_double(t[3], &ratio) ? "OK" : "ERROR";
    if (!tok_u32(t[2], &level))
        return "CLIENT_ERROR bad command line format";
    return level <= 2 ? "OK" : "ERROR";
}

/* metadump's classes: "all", "hash" or ids 1..63 separated by commas, as
 * memcached 1.6.18 reads them. */
static const char *
metadump(struct tok t, struct proto_req *req)
{
    if (tok_is(t, "all") || tok_is(t, "hash")) {
        req->dump = true;
        return "";
    }
    bool one = false;
    size_t i = 0;
    while (i < t.n) {
        uint64_t id = 0;
        size_t start = i;
        for (; i < t.n && t.p[i] >= '0' && t.p[i] <= '9' && id < 1000; i++)
            id = id * 10 + (uint64_t)(t.p[i] - '0');
        if (i == start || id == 0 || id > 63 || (i < t.n && t.p[i] != ','))
            return "BADCLASS invalid class id";
        one |= id == 1;
        i++;
    }
    req->dump = one;
    return one ? "" : "END";
}

static const char *
lru_crawler(const struct line *l, struct proto_req *req)
{
    const struct tok *t = l->tok;
    uint64_t n;

    if (l->ntok == 3) {
        if (tok_is(t[1], "metadump"))
            return metadump(t[2], req);
        if (tok_is(t[1], "crawl"))
            return "CLIENT_ERROR lru crawler disabled";
        if (tok_is(t[1], "tocrawl"))
            return tok_u32(t[2], &n) ? "OK"
                                     : "CLIENT_ERROR bad command line format";
        if (tok_is(t[1], "sleep")) {
            if (!tok_u32(t[2], &n))
                return "CLIENT_ERROR bad command line format";
            return n > 1000000 ? "CLIENT_ERROR sleep must be one second or less"
                               : "OK";
        }
    } else if (l->ntok == 2) {
        if (tok_is(t[1], "enable"))
            return "ERROR failed to start lru crawler thread";
        if (tok_is(t[1], "disable"))
            return "OK";
    }
    return "ERROR";
}

static const char *
lru(const struct line *l, struct proto_req *req)
{
    const struct tok *t = l->tok;
    uint64_t hot, warm;
    double hot_factor, factor;
    int64_t ttl;

    if (l->ntok < 2)
        return "ERROR";
    req->noreply = last_is_noreply(l);
    if (tok_is(t[1], "tune") && l->ntok >= 6) {
        if (!tok_u32(t[2], &hot) || !tok_u32(t[3], &warm) ||
            !tok_double(t[4], &hot_factor) || !tok_double(t[5], &factor))
            return "ERROR";
        if (hot + warm > 80)
            return "ERROR hot and warm pcts must not exceed 80";
        if (factor <= 0 || hot_factor <= 0)
            return "ERROR hot/warm age factors must be greater than 0";
        return "OK";
    }
    if (tok_is(t[1], "mode") && l->ntok >= 3)
        return tok_is(t[2], "flat") || tok_is(t[2], "segmented") ? "OK"
                                                                 : "ERROR";
    if (tok_is(t[1], "temp_ttl") && l->ntok >= 3)
        return proto_i32(t[2], &ttl) ? "OK" : "ERROR";
    return "ERROR";
}

static const char *
cache_memlimit(const struct line *l, struct proto_req *req)
{
    uint64_t mb;

    if (l->ntok != 2 && l->ntok != 3)
        return "ERROR";
    req->noreply = last_is_noreply(l);
    if (!tok_u32(l->tok[1], &mb))
        return "ERROR";
    if (mb < 8)
        return "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m";
    if (mb > 1000000000)
        return "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes";
    return "OK";
}

int
admin_parse(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    const char *answer;

    switch (req->cmd) {
    case PROTO_SLABS:
        answer = slabs(l, req);
        break;
    case PROTO_LRU_CRAWLER:
        answer = lru_crawler(l, req);
        break;
    case PROTO_LRU:
        answer = lru(l, req);
        break;
    case PROTO_CACHE_MEMLIMIT:
        answer = cache_memlimit(l, req);
        break;
    case PROTO_WATCH:
        req->noreply = last_is_noreply(l);
        answer = "CLIENT_ERROR watch commands not allowed";
        break;
    default: /* PROTO_SHUTDOWN */
        answer = "ERROR: shutdown not enabled";
        break;
    }
    req->answer = answer;
    req->consumed = l->next;
    return PROTO_OK;
}
