/*
 * Malformed and hostile input: garbage, binary and NUL bytes, over-long
 * lines, lying lengths, truncated requests, connection storms, a client that
 * pipelines without reading, half-closed and reset sockets. Each input gets
 * a protocol error or a closed connection, never a crash or a hang, and
 * afterwards the server answers "version" on a fresh connection and still
 * stores and reads values. Each test starts its own server.
 *
 *   build/tests/test_net_hostile
 *   MCDB_TEST_TARGET=memcached build/tests/test_net_hostile
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

TG_SUITE_NEEDS(0)

static struct th_server srv;

static void
setup(void)
{
    /* Room for the connection storm: the server inherits the limit. */
    th_raise_fd_limit();
    cr_assert_eq(tg_start(&srv, NULL), 0, "%s did not start", tg_name());
}

static void
teardown(void)
{
    tg_report_death(&srv);
    th_server_cleanup(&srv);
}

TestSuite(hostile, .init = setup, .fini = teardown, .timeout = 60);

static int
conn(void)
{
    int fd = tg_connect(srv.port);
    cr_assert(fd >= 0, "cannot connect to %s", tg_name());
    return fd;
}

/* The server process is alive, answers version on a fresh connection, and
 * stores and reads a value. */
static void
still_serving(void)
{
    int st;
    cr_assert_eq(waitpid(srv.pid, &st, WNOHANG), 0,
                 "%s died (status 0x%x); see %s", tg_name(), st, srv.log);
    cr_assert(tg_answers_version(srv.port), "%s does not answer version",
              tg_name());
    int fd = conn();
    tg_expect(fd, "set health 3 0 2\r\nok\r\n", "STORED\r\n");
    tg_expect(fd, "get health\r\n", "VALUE health 3 2\r\nok\r\nEND\r\n");
    close(fd);
}

/*
 * Send len bytes without blocking, reading and dropping whatever comes back
 * so that replies cannot stall the sender. Returns 1 when everything was
 * sent, 0 when ms passed first, -1 when the server closed or reset.
 */
/* How many error replies (ERROR, CLIENT_ERROR, SERVER_ERROR) buf holds. */
static long
count_errors(const char *buf, size_t n)
{
    long e = 0;
    for (const char *p = buf;
         (p = memmem(p, n - (size_t)(p - buf), "ERROR", 5)) != NULL; p += 5)
        e++;
    return e;
}

/* blast(), counting the error replies it reads and drops in *errs. */
static int
blast_counting(int fd, const void *data, size_t len, int ms, long *errs)
{
    const char *p = data;
    uint64_t end = tg_now_ms() + (uint64_t)ms;
    char sink[65536];
    while (len) {
        uint64_t now = tg_now_ms();
        if (now >= end)
            return 0;
        struct pollfd pf = {.fd = fd, .events = POLLIN | POLLOUT};
        if (poll(&pf, 1, (int)(end - now)) <= 0)
            continue;
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                return -1;
            if (r > 0 && errs)
                *errs += count_errors(sink, (size_t)r);
        }
        if (pf.revents & POLLOUT) {
            ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return -1;
            if (n > 0) {
                p += n;
                len -= (size_t)n;
            }
        }
    }
    return 1;
}

static int
blast(int fd, const void *data, size_t len, int ms)
{
    return blast_counting(fd, data, len, ms, NULL);
}

/*
 * After a hostile request: ask "version" and read lines. Returns 1 when the
 * VERSION line came (the connection is usable), 0 when the server closed it.
 * Fails on a hang. *errors counts lines that were protocol errors, *others
 * the rest.
 */
static int
answer_or_close(int fd, int *errors, int *others)
{
    int e = 0, o = 0, ret = 0;
    /* The leading newline ends whatever partial line the hostile input left
     * (its reply, if any, counts among the errors). */
    if (th_sends(fd, "\r\nversion\r\n") == 0) {
        for (int i = 0; i < 100000; i++) {
            char *line = tg_recv_line(fd);
            if (!line) {
                /* EOF or timeout: tell them apart. */
                cr_assert(tg_wait_closed(fd, 1000, NULL, NULL),
                          "no reply to version and the connection is open "
                          "(a hang)");
                break;
            }
            if (strncmp(line, "VERSION ", 8) == 0) {
                free(line);
                ret = 1;
                break;
            }
            if (strcmp(line, "ERROR") == 0 ||
                strncmp(line, "CLIENT_ERROR ", 13) == 0 ||
                strncmp(line, "SERVER_ERROR ", 13) == 0)
                e++;
            else
                o++;
            free(line);
        }
    }
    if (errors)
        *errors = e;
    if (others)
        *others = o;
    return ret;
}

Test(hostile, garbage_lines_get_errors_and_the_connection_stays_usable)
{
    static const char *lines[] = {
        "hello world",
        "!!!",
        "12345",
        "\x7f\x7f",
        "\t\t",
        "   ",
        "getx k",
        "sets k 0 0 1",
        "stats_nonsense",
        "incr",
        "cas",
        "ÿþýü",
        "\xc3\x28 invalid utf-8",
        "%s%s%s%n",
        "' OR 1=1 --",
    };
    int fd = conn();
    char *all = malloc(65536);
    size_t n = 0;
    for (size_t i = 0; i < sizeof(lines) / sizeof(*lines); i++)
        n += (size_t)sprintf(all + n, "%s\r\n", lines[i]);
    /* A line with a thousand tokens. */
    n += (size_t)sprintf(all + n, "bogus");
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(all + n, " t");
    n += (size_t)sprintf(all + n, "\r\n");
    cr_assert_eq(th_send(fd, all, n), 0);
    free(all);
    int errors = 0, others = 0;
    cr_assert(answer_or_close(fd, &errors, &others),
              "connection closed after garbage lines");
    cr_assert_eq(others, 0, "%d replies to garbage were not errors", others);
    cr_assert_geq(errors, 10, "only %d error replies to 16 garbage lines",
                  errors);
    close(fd);
    still_serving();
}

static unsigned
lcg(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

Test(hostile, random_binary_bytes_get_errors_or_a_close)
{
    unsigned seed = 12345;
    size_t len = 256 * 1024;
    unsigned char *junk = malloc(len);
    for (int round = 0; round < 8; round++) {
        for (size_t i = 0; i < len; i++)
            junk[i] = (unsigned char)lcg(&seed);
        if (round == 0)
            junk[0] = 0x80; /* the binary protocol's magic byte */
        int fd = conn();
        long errs = 0;
        int r = blast_counting(fd, junk, len, 3000, &errs);
        char *got = NULL;
        size_t gl = 0;
        int closed = r < 0 || tg_wait_closed(fd, 200, &got, &gl);
        if (got)
            errs += count_errors(got, gl);
        fprintf(stderr, "random bytes, round %d: %s, %ld error replies%s\n",
                round,
                r > 0   ? "all sent"
                : r < 0 ? "closed while sending"
                        : "timed out while sending",
                errs, closed ? ", closed" : "");
        free(got);
        cr_assert(closed || errs > 0,
                  "round %d: 256 KiB of random bytes got neither an error "
                  "reply nor a close",
                  round);
        close(fd);
    }
    free(junk);
    still_serving();
}

Test(hostile, mutated_commands_get_errors_or_a_close)
{
    static const char script[] =
        "set k 5 0 10\r\n0123456789\r\nget k other\r\ngets k\r\n"
        "incr n 5\r\ncas k 0 0 1 12\r\nx\r\ntouch k 10\r\ngat 10 k\r\n"
        "append k 0 0 2\r\nab\r\ndelete k\r\nverbosity 1 noreply\r\n"
        "stats\r\nversion\r\n";
    /* No flush_all: a mutated one ("flush_all 1") would, rightly, empty the
     * store while still_serving() checks it, from a connection that another
     * server thread may still be reading after the close. */
    size_t len = sizeof(script) - 1;
    unsigned seed = 777;
    char *m = malloc(len + 16);
    int with_errors = 0, rounds = 300;
    for (int round = 0; round < rounds; round++) {
        memcpy(m, script, len);
        size_t mlen = len;
        int flips = 1 + (int)(lcg(&seed) % 4);
        for (int i = 0; i < flips; i++) {
            size_t at = lcg(&seed) % mlen;
            switch (lcg(&seed) % 4) {
            case 0:
                m[at] = (char)lcg(&seed);
                break; /* any byte */
            case 1:
                m[at] = "0 \r\n-9"[lcg(&seed) % 6];
                break;
            case 2:
                memmove(m + at, m + at + 1, mlen - at - 1);
                mlen--;
                break;
            default:
                m[at] = '\0';
                break;
            }
        }
        /* Each script on its own connection, then an EOF: the server
         * answers what it can (a data block a mutated length left short
         * ends at the EOF) and closes. */
        int fd = conn();
        long errs = 0;
        int r = blast_counting(fd, m, mlen, 2000, &errs);
        shutdown(fd, SHUT_WR);
        char *got = NULL;
        size_t gl = 0;
        if (r >= 0 && !tg_wait_closed(fd, 5000, &got, &gl)) {
            char *esc = tg_escape(m, mlen, 2000);
            cr_assert_fail("round %d: no close 5 s after the EOF (a hang); "
                           "sent \"%s\"",
                           round, esc);
        }
        if (got)
            errs += count_errors(got, gl);
        with_errors += errs > 0;
        free(got);
        close(fd);
    }
    /* Most mutations break a command line; some only change a value or a
     * number that stays valid. */
    fprintf(stderr, "%s: %d of %d mutated scripts got error replies\n",
            tg_name(), with_errors, rounds);
    cr_assert_geq(with_errors, rounds / 3,
                  "only %d of %d mutated scripts got an error reply",
                  with_errors, rounds);
    free(m);
    still_serving();
}

/*
 * Meta requests with every kind of flag, mutated a few bytes at a time.
 * Each mutated script goes on a fresh connection that is then half-closed:
 * the server must answer what it can and close (a data block left
 * incomplete by a mutated length ends at the EOF), never hang or crash.
 * The seed is printed; MCDB_SEED=<n> replays a run.
 */
Test(hostile, mutated_meta_commands_get_answers_or_a_close)
{
    static const char script[] = "ms k 10 T60 F5\r\n0123456789\r\n"
                                 "mg k v c f t s k Oabc\r\n"
                                 "mg k h l\r\n"
                                 "ms k 2 MA\r\nxy\r\n"
                                 "ms k 2 MP q\r\nab\r\n"
                                 "mg miss v c N30\r\n"
                                 "ms miss 3 C1 I\r\nabc\r\n"
                                 "md k I T30\r\n"
                                 "mg k v c R30 T10\r\n"
                                 "ma n N0 J5 D2 v\r\n"
                                 "ma n MD D1 q\r\n"
                                 "md n q\r\n"
                                 "mg a2V5 b k v\r\n"
                                 "ms a2V5 1 b E77\r\nz\r\n"
                                 "me k\r\n"
                                 "ms e 0 x\r\n\r\n"
                                 "md k C999 q\r\n"
                                 "mn\r\n";
    size_t len = sizeof(script) - 1;
    unsigned seed =
        getenv("MCDB_SEED") ? (unsigned)atoi(getenv("MCDB_SEED")) : 4242;
    fprintf(stderr, "mutated meta commands: seed %u (MCDB_SEED=%u replays)\n",
            seed, seed);
    char *m = malloc(len + 16);
    int answered = 0, rounds = 300;
    for (int round = 0; round < rounds; round++) {
        memcpy(m, script, len);
        size_t mlen = len;
        int flips = 1 + (int)(lcg(&seed) % 4);
        for (int i = 0; i < flips; i++) {
            size_t at = lcg(&seed) % mlen;
            switch (lcg(&seed) % 5) {
            case 0: /* any byte */
                m[at] = (char)lcg(&seed);
                break;
            case 1:
                m[at] = "0 \r\n-9"[lcg(&seed) % 6];
                break;
            case 2: /* a flag */
                m[at] = "vcqkNTIRMEbOsft"[lcg(&seed) % 15];
                break;
            case 3:
                memmove(m + at, m + at + 1, mlen - at - 1);
                mlen--;
                break;
            default:
                m[at] = '\0';
                break;
            }
        }
        int fd = conn();
        int r = blast(fd, m, mlen, 2000);
        shutdown(fd, SHUT_WR);
        char *got = NULL;
        size_t gl = 0;
        int closed = r < 0 || tg_wait_closed(fd, 5000, &got, &gl);
        if (!closed) {
            char *esc = tg_escape(m, mlen, 2000);
            cr_assert_fail("round %d: no close 5 s after the EOF (a hang); "
                           "sent \"%s\"",
                           round, esc);
        }
        answered += gl > 0;
        free(got);
        close(fd);
        if (round % 50 == 49) {
            int st;
            cr_assert_eq(waitpid(srv.pid, &st, WNOHANG), 0,
                         "%s died in round %d (status 0x%x); see %s", tg_name(),
                         round, st, srv.log);
        }
    }
    fprintf(stderr, "%s: %d of %d mutated meta scripts got replies\n",
            tg_name(), answered, rounds);
    cr_assert_geq(answered, rounds / 2, "only %d of %d scripts got a reply",
                  answered, rounds);
    free(m);
    still_serving();
}

Test(hostile, nul_bytes_in_commands_get_errors_or_a_close)
{
    static const struct {
        const char *s;
        size_t n;
    } reqs[] = {
        {"\0\0\0\r\n", 5},
        {"get a\0b\r\n", 9},
        {"set k\0 0 0 1\r\nx\r\n", 17},
        {"set k 0\0 0 1\r\nx\r\n", 17},
        {"\0", 1},
        {"version\0\r\n", 10},
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(*reqs); i++) {
        int fd = conn();
        cr_assert_eq(th_send(fd, reqs[i].s, reqs[i].n), 0);
        answer_or_close(fd, NULL, NULL);
        close(fd);
    }
    /* A NUL inside a value is data like any other byte. */
    int fd = conn();
    tg_expect_n(fd, "set z 0 0 3\r\na\0b\r\n", 18, "STORED\r\n", 8);
    tg_expect_n(fd, "get z\r\n", 7, "VALUE z 0 3\r\na\0b\r\nEND\r\n", 23);
    close(fd);
    still_serving();
}

/* memcached closes a non-get line longer than 2 KB, mcdbd one longer than
 * its PROTO_MAX_LINE (8 KB). */
Test(hostile, over_long_line_closes_the_connection)
{
    size_t len = 1024 * 1024;
    char *line = malloc(len + 2);
    memset(line, 'x', len);
    memcpy(line + len, "\r\n", 2);
    const char *starts[] = {"", "set ", "bogus "};
    for (size_t i = 0; i < sizeof(starts) / sizeof(*starts); i++) {
        memcpy(line, starts[i], strlen(starts[i]));
        for (int nl = 0; nl < 2; nl++) { /* without, then with its newline */
            int fd = conn();
            uint64_t t0 = tg_now_ms();
            int r = blast(fd, line, nl ? len + 2 : len, 5000);
            char *got = NULL;
            int closed = r < 0 || tg_wait_closed(fd, 5000, &got, NULL);
            cr_assert(closed,
                      "a %s-byte line starting \"%s\"%s: still open after %d ms"
                      " (got \"%.100s\")",
                      "1 M", starts[i], nl ? " with a newline" : "",
                      (int)(tg_now_ms() - t0), got ? got : "");
            if (got)
                cr_assert(strncmp(got, "CLIENT_ERROR", 12) == 0 ||
                              strncmp(got, "SERVER_ERROR", 12) == 0 ||
                              strncmp(got, "ERROR", 5) == 0,
                          "before closing, sent \"%.100s\"", got);
            free(got);
            close(fd);
        }
    }
    free(line);
    still_serving();
}

Test(hostile, negative_or_non_numeric_lengths_are_client_errors)
{
    static const char *lens[] = {"-1",
                                 "-100000000000",
                                 "18446744073709551616",
                                 "99999999999999999999999999",
                                 "1.5",
                                 "0x10",
                                 "abc"};
    int fd = conn();
    for (size_t i = 0; i < sizeof(lens) / sizeof(*lens); i++) {
        char req[128];
        snprintf(req, sizeof(req), "set k 0 0 %s\r\n", lens[i]);
        tg_expect(fd, req, "CLIENT_ERROR bad command line format\r\n");
        snprintf(req, sizeof(req), "cas k 0 0 %s 1\r\n", lens[i]);
        tg_expect(fd, req, "CLIENT_ERROR bad command line format\r\n");
    }
    tg_expect_quiet(fd);
    tg_expect(fd, "get k\r\n", "END\r\n");
    close(fd);
    still_serving();
}

/* memcached 1.6.18 reads a length of 2^32 as 0 and waits for a data
 * block; issue 4 asks for an error or a close for every enormous length. */
Test(hostile, length_of_2_pow_32_is_an_error_not_a_wrap_to_zero)
{
    if (tg_is_memcached())
        cr_skip_test("memcached wraps a length of 2^32 to 0");
    int fd = conn();
    cr_assert_eq(th_sends(fd, "set k 0 0 4294967296\r\n"), 0);
    char *line = tg_recv_line(fd);
    cr_assert(line || tg_wait_closed(fd, 1000, NULL, NULL),
              "no reply to a length of 2^32 and the connection is open");
    if (line)
        cr_assert(strncmp(line, "CLIENT_ERROR ", 13) == 0 ||
                      strncmp(line, "SERVER_ERROR ", 13) == 0,
                  "got \"%s\"", line);
    free(line);
    close(fd);
    fd = conn();
    tg_expect(fd, "get k\r\n", "END\r\n");
    close(fd);
    still_serving();
}

/* Lengths far over the item limit: the server must neither allocate them
 * nor keep their data. memcached sends its SERVER_ERROR only once the data
 * has been swallowed, and, its lengths being 32-bit ints, answers 2^31 with
 * CLIENT_ERROR bad command line format; mcdbd may answer at once. */
Test(hostile, enormous_valid_length_is_refused_without_allocating_it)
{
    static const char *lens[] = {"2000000000", "2147483648", "4294967295"};
    size_t chunk_len = 8 << 20;
    char *chunk = malloc(chunk_len + 64);
    for (size_t i = 0; i < sizeof(lens) / sizeof(*lens); i++) {
        int fd = conn();
        int hl = sprintf(chunk, "set k 0 0 %s\r\n", lens[i]);
        memset(chunk + hl, 'z', chunk_len);
        long rss0 = tg_rss_kb(srv.pid);
        int r = blast(fd, chunk, (size_t)hl + chunk_len, 5000);
        long rss = tg_rss_kb(srv.pid);
        char *got = NULL;
        int closed = r < 0 || tg_wait_closed(fd, 300, &got, NULL);
        cr_assert(
            got == NULL ||
                strcmp(got, "SERVER_ERROR object too large for cache\r\n") ==
                    0 ||
                strncmp(got, "CLIENT_ERROR bad command line format\r\n", 38) ==
                    0,
            "length %s: got \"%.100s\"", lens[i], got);
        fprintf(stderr,
                "%s: 8 MB of a %s-byte value sent (%s); RSS %ld kB -> %ld kB\n",
                tg_name(), lens[i], closed ? "then closed" : "still open", rss0,
                rss);
        cr_assert_lt(rss, 200 * 1024, "server RSS reached %ld kB", rss);
        free(got);
        close(fd);
    }
    free(chunk);
    int fd = conn();
    tg_expect(fd, "get k\r\n", "END\r\n");
    close(fd);
    still_serving();
}

Test(hostile, enormous_numbers_in_other_fields_are_errors)
{
    int fd = conn();
    tg_expect(fd, "set k 0 0 1\r\n1\r\n", "STORED\r\n");
    tg_expect(fd, "touch k 99999999999999999999999\r\n",
              "CLIENT_ERROR invalid exptime argument\r\n");
    tg_expect(fd, "gat 99999999999999999999999 k\r\n",
              "CLIENT_ERROR invalid exptime argument\r\n");
    tg_expect(fd, "flush_all 99999999999999999999999\r\n",
              "CLIENT_ERROR invalid exptime argument\r\n");
    tg_expect(fd, "incr k 99999999999999999999999\r\n",
              "CLIENT_ERROR invalid numeric delta argument\r\n");
    tg_expect(fd, "set k 0 99999999999999999999999 1\r\n",
              "CLIENT_ERROR bad command line format\r\n");
    tg_expect(fd, "cas k 0 0 1 99999999999999999999999\r\n",
              "CLIENT_ERROR bad command line format\r\n");
    tg_expect_quiet(fd);
    tg_expect(fd, "get k\r\n", "VALUE k 0 1\r\n1\r\nEND\r\n");
    close(fd);
    still_serving();
}

Test(hostile, data_shorter_than_its_length_waits_for_the_rest)
{
    /* The length rules, not the newlines inside the data. */
    int fd = conn();
    cr_assert_eq(th_sends(fd, "set k 0 0 10\r\nabc\r\n"), 0);
    char *got = NULL;
    cr_assert_not(tg_wait_closed(fd, 300, &got, NULL), "closed");
    cr_assert_null(got, "replied \"%s\" before the data was complete", got);
    tg_expect(fd, "defgh\r\n", "STORED\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 0 10\r\nabc\r\ndefgh\r\nEND\r\n");
    close(fd);
    still_serving();
}

Test(hostile, data_longer_than_its_length_is_a_bad_data_chunk)
{
    int fd = conn();
    tg_expect(fd, "set k 0 0 1\r\nold\r\n", "CLIENT_ERROR bad data chunk\r\n");
    answer_or_close(fd, NULL, NULL);
    close(fd);
    fd = conn();
    tg_expect(fd, "set k 0 0 2\r\nabcdefghijklmnopqrstuvwxyz\r\n",
              "CLIENT_ERROR bad data chunk\r\n");
    answer_or_close(fd, NULL, NULL);
    close(fd);
    fd = conn();
    tg_expect(fd, "get k\r\n", "END\r\n");
    close(fd);
    still_serving();
}

Test(hostile, truncated_requests_then_disconnect_store_nothing)
{
    static const char req[] = "set k 1 0 10\r\n0123456789\r\n";
    size_t hdr = strlen("set k 1 0 10\r\n");
    /* Every cut that leaves the data block incomplete. */
    for (size_t cut = 1; cut < hdr + 10; cut++) {
        int fd = conn();
        cr_assert_eq(th_send(fd, req, cut), 0);
        close(fd);
    }
    static const char *partial[] = {
        "get k",    "gets k k k",        "incr n",
        "delete k", "cas k 0 0 1 1\r\n", "flush_all"};
    for (size_t i = 0; i < sizeof(partial) / sizeof(*partial); i++) {
        int fd = conn();
        cr_assert_eq(th_sends(fd, partial[i]), 0);
        close(fd);
    }
    int fd = conn();
    tg_expect(fd, "set n 0 0 1\r\n5\r\n", "STORED\r\n");
    close(fd);
    fd = conn();
    cr_assert_eq(th_sends(fd, "incr n 1"), 0); /* no newline: not a command */
    close(fd);
    usleep(100 * 1000);
    fd = conn();
    tg_expect(fd, "get k n\r\n", "VALUE n 0 1\r\n5\r\nEND\r\n");
    close(fd);
    still_serving();
}

Test(hostile, a_thousand_connections_opened_and_dropped_are_released)
{
    int n = 1000;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 100) {
        n = (int)rl.rlim_cur - 100;
        fprintf(stderr, "only %d connections: RLIMIT_NOFILE is %llu\n", n,
                (unsigned long long)rl.rlim_cur);
    }
    int ctl = conn();
    long long base = tg_stat(ctl, NULL, "curr_connections");
    int *fds = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        fds[i] = th_connect(srv.port);
        cr_assert(fds[i] >= 0, "connection %d refused", i);
        if (i % 3 == 1)
            th_sends(fds[i], "set k 0 0 100\r\npartial");
        else if (i % 3 == 2)
            th_sends(fds[i], "get k");
    }
    /* All of them are served at once. */
    cr_assert(tg_answers_version(srv.port));
    tg_expect_quiet(fds[n - 1]);
    for (int i = 0; i < n; i++) {
        if (i % 2) { /* half of them with a reset */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(fds[i]);
    }
    free(fds);
    /* The server lets go of them (and perhaps of a connection an earlier
     * test closed just before the baseline was read). */
    long long curr = -1;
    for (int t = 0; t < 50; t++) {
        curr = tg_stat(ctl, NULL, "curr_connections");
        if (curr <= base)
            break;
        usleep(100 * 1000);
    }
    cr_assert(curr <= base, "curr_connections %lld, %lld before the storm",
              curr, base);
    close(ctl);
    still_serving();
}

Test(hostile, client_pipelining_gets_without_reading_gets_backpressure)
{
    /* 10 KB values: 10 MB of "get big\r\n" asks for ~11 GB of replies. */
    int fd = conn();
    size_t vl = 10 * 1024;
    char *v = malloc(vl + 64);
    int hl = sprintf(v, "set big 0 0 %zu\r\n", vl);
    memset(v + hl, 'v', vl);
    memcpy(v + hl + vl, "\r\n", 2);
    tg_expect_n(fd, v, (size_t)hl + vl + 2, "STORED\r\n", 8);
    free(v);

    size_t len = 10 * 1024 * 1024;
    char *gets = malloc(len);
    for (size_t i = 0; i + 9 <= len; i += 9)
        memcpy(gets + i, "get big\r\n", 9);
    len -= len % 9;

    struct tg_bystander other = {.port = srv.port};
    pthread_t th;
    pthread_create(&th, NULL, tg_bystander_main, &other);

    /* Send without ever reading, for up to 4 s, watching the server's RSS. */
    long rss0 = tg_rss_kb(srv.pid), rss_max = rss0;
    size_t sent = 0;
    uint64_t end = tg_now_ms() + 4000;
    while (sent < len && tg_now_ms() < end) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        if (poll(&pf, 1, 100) > 0 && (pf.revents & POLLOUT)) {
            ssize_t n =
                send(fd, gets + sent, len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                break;
            if (n > 0)
                sent += (size_t)n;
        }
        long rss = tg_rss_kb(srv.pid);
        if (rss > rss_max)
            rss_max = rss;
    }
    other.stop = 1;
    pthread_join(th, NULL);
    fprintf(
        stderr,
        "%s: sent %zu of %zu bytes of gets unread; RSS %ld kB -> max %ld kB;"
        " other client: %d round trips, slowest %ld ms\n",
        tg_name(), sent, len, rss0, rss_max, other.ok, other.max_ms);
    cr_assert_lt(rss_max, 200 * 1024, "server RSS reached %ld kB", rss_max);
    cr_assert_eq(other.failed, 0, "the other client was not served");
    cr_assert_geq(other.ok, 10, "the other client got only %d round trips",
                  other.ok);
    cr_assert_lt(other.max_ms, 2000, "the other client waited %ld ms",
                 other.max_ms);
    /* Reset rather than have the server drain 11 GB into the void. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    free(gets);
    still_serving();
}

Test(hostile, half_closed_client_still_gets_its_replies_then_a_close)
{
    int fd = conn();
    cr_assert_eq(th_sends(fd, "set k 0 0 1\r\nx\r\nget k\r\nversion"), 0);
    shutdown(fd, SHUT_WR);
    char *got = NULL;
    size_t gl = 0;
    cr_assert(tg_wait_closed(fd, 5000, &got, &gl),
              "the server did not close a half-closed connection");
    static const char want[] = "STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n";
    char *esc = tg_escape(got ? got : "", gl, 300);
    cr_assert(got && gl == sizeof(want) - 1 && memcmp(got, want, gl) == 0,
              "got \"%s\", expected \"STORED\\r\\nVALUE k 0 "
              "1\\r\\nx\\r\\nEND\\r\\n\"",
              esc);
    free(esc);
    free(got);
    close(fd);
    still_serving();
}

Test(hostile, reset_in_the_middle_of_large_replies_is_harmless)
{
    int fd = conn();
    size_t vl = 500 * 1000;
    char *v = malloc(vl + 64);
    int hl = sprintf(v, "set big 0 0 %zu\r\n", vl);
    memset(v + hl, 'r', vl);
    memcpy(v + hl + vl, "\r\n", 2);
    tg_expect_n(fd, v, (size_t)hl + vl + 2, "STORED\r\n", 8);
    free(v);
    close(fd);
    for (int i = 0; i < 20; i++) {
        fd = conn();
        for (int j = 0; j < 20; j++)
            th_sends(fd, "get big big\r\n");
        char buf[1000];
        recv(fd, buf, sizeof(buf), 0); /* a reply has started */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
    }
    /* And a writer that resets in the middle of its data block. */
    for (int i = 0; i < 20; i++) {
        fd = conn();
        th_sends(fd, "set half 0 0 100000\r\n");
        char part[5000];
        memset(part, 'h', sizeof(part));
        th_send(fd, part, sizeof(part));
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
    }
    fd = conn();
    tg_expect(fd, "get half\r\n", "END\r\n");
    close(fd);
    still_serving();
}
