/* Syscall storm: N getppid() via syscall(2), so no libc caching can hide it.
 * usage: getppid_storm N */
#include "bench_common.h"
#include <sys/syscall.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? parse_count(argv[1], "N") : 2000000;
    volatile long sink = 0;
    gate_wait();
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        sink += syscall(SYS_getppid);
    uint64_t t1 = now_ns();
    (void)sink;
    printf("RESULT workload=getppid calls=%ld ns_total=%llu ns_per_call=%.2f",
           n, (unsigned long long)(t1 - t0), (double)(t1 - t0) / n);
    print_rusage_tail();
    return 0;
}
