/*
 * The number of CPUs this process may run on: its affinity mask (taskset,
 * systemd's CPUAffinity=, a container's cpuset), not every online CPU.
 */
#ifndef MCDB_CPUS_H
#define MCDB_CPUS_H

#include <sched.h>
#include <unistd.h>

static inline unsigned
cpus_usable(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (unsigned)n;
}

#endif
