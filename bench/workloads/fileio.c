/* File I/O: create M files of 4 KiB in DIR (meant to be a tmpfs), then
 * K passes of open / read 4 KiB / close over each of them.
 * usage: fileio DIR M K
 * calls = M*K*3 (openat + read + close); ns_per_call = timed / calls;
 * ns_per_op = per open+read+close cycle. File creation is timed separately. */
#include "bench_common.h"
#include <fcntl.h>

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: fileio DIR [M] [K]\n"); return 2; }
    const char *dir = argv[1];
    long m = argc > 2 ? parse_count(argv[2], "M") : 1000;
    long k = argc > 3 ? parse_count(argv[3], "K") : 20;
    char buf[4096], path[4096];
    memset(buf, 'x', sizeof buf);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) { perror(dir); return 1; }

    uint64_t c0 = now_ns();
    for (long i = 0; i < m; i++) {
        snprintf(path, sizeof path, "f%06ld", i);
        int fd = openat(dfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror(path); return 1; }
        close(fd);
    }
    uint64_t c1 = now_ns();

    long fails = 0;
    gate_wait();
    uint64_t t0 = now_ns();
    for (long pass = 0; pass < k; pass++) {
        for (long i = 0; i < m; i++) {
            snprintf(path, sizeof path, "f%06ld", i);
            int fd = openat(dfd, path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) { fails++; continue; }
            if (read(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
                fails++;
            close(fd);
        }
    }
    uint64_t t1 = now_ns();

    for (long i = 0; i < m; i++) {
        snprintf(path, sizeof path, "f%06ld", i);
        unlinkat(dfd, path, 0);
    }
    close(dfd);
    long ops = m * k;
    printf("RESULT workload=fileio files=%ld passes=%ld ops=%ld calls=%ld ns_create_total=%llu "
           "ns_total=%llu ns_per_op=%.2f ns_per_call=%.2f fails=%ld",
           m, k, ops, ops * 3, (unsigned long long)(c1 - c0), (unsigned long long)(t1 - t0),
           (double)(t1 - t0) / ops, (double)(t1 - t0) / (ops * 3), fails);
    print_rusage_tail();
    return fails ? 1 : 0;
}
