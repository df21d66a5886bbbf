/* Syscall storm: N 1-byte read()s from /dev/zero.  usage: read_storm N */
#include "bench_common.h"
#include <fcntl.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? parse_count(argv[1], "N") : 500000;
    int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    if (fd < 0) { perror("open /dev/zero"); return 1; }
    char b;
    long fails = 0;
    gate_wait();
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        if (read(fd, &b, 1) != 1)
            fails++;
    uint64_t t1 = now_ns();
    close(fd);
    printf("RESULT workload=read calls=%ld ns_total=%llu ns_per_call=%.2f fails=%ld",
           n, (unsigned long long)(t1 - t0), (double)(t1 - t0) / n, fails);
    print_rusage_tail();
    return fails ? 1 : 0;
}
