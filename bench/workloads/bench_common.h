/* Shared helpers for the swatch benchmark workloads.
 *
 * Every workload times ITS OWN measured loop with CLOCK_MONOTONIC, so tracer
 * start-up and tear-down never enter the per-call figures, and prints exactly
 * one machine-readable line to stdout:
 *
 *   RESULT workload=NAME calls=N ns_total=T ns_per_call=X ... cpu_self_ns=.. cpu_children_ns=..
 *
 * Gate: if the environment variable BENCH_GATE_FD names an open fd, the
 * workload blocks reading one byte from it before the timed loop starts. The
 * harness uses this to let a tracer attach to the (already running) pid first.
 * The gate read happens outside the timed region, so untraced and traced runs
 * of the same binary time exactly the same loop.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void gate_wait(void)
{
    const char *s = getenv("BENCH_GATE_FD");
    if (!s || !*s)
        return;
    int fd = atoi(s);
    char c;
    ssize_t r;
    do {
        r = read(fd, &c, 1);
    } while (r < 0 && errno == EINTR);
    close(fd);
}

static inline long parse_count(const char *s, const char *what)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!end || *end || v <= 0) {
        fprintf(stderr, "bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static inline uint64_t tv_ns(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000000ull + (uint64_t)tv.tv_usec * 1000ull;
}

/* Appends " cpu_self_ns=.. cpu_children_ns=.. maxrss_kb=.." and a newline. */
static inline void print_rusage_tail(void)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    printf(" cpu_self_ns=%llu cpu_children_ns=%llu maxrss_kb=%ld pid=%d\n",
           (unsigned long long)(tv_ns(self.ru_utime) + tv_ns(self.ru_stime)),
           (unsigned long long)(tv_ns(kids.ru_utime) + tv_ns(kids.ru_stime)),
           self.ru_maxrss, (int)getpid());
    fflush(stdout);
}
#endif
