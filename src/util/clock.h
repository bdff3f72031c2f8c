/*
 * clock: the time, in the units the code counts in. Monotonic for
 * durations and deadlines; the wall clock only where a time is stored or
 * shown (the store's record times go through its own configurable clock,
 * store_now_ms, so that tests can move it).
 */
#ifndef MCDB_CLOCK_H
#define MCDB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t
clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t
clock_mono_ms(void)
{
    return clock_mono_us() / 1000;
}

static inline int64_t
clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t
clock_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* An absolute CLOCK_REALTIME time `us` from now, for pthread_cond_timedwait
 * on a condition variable with the default clock. */
static inline struct timespec
clock_deadline_us(int64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += us / 1000000;
    ts.tv_nsec += (us % 1000000) * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

static inline struct timespec
clock_deadline_ms(int64_t ms)
{
    return clock_deadline_us(ms * 1000);
}

#endif
