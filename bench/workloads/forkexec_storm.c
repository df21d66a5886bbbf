/* Fork/exec storm: N x (fork + execve /bin/true + waitpid).
 * usage: forkexec_storm N [PATH=/bin/true]
 * Reports how many children were started and how many exited 0. */
#include "bench_common.h"
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
    long n = argc > 1 ? parse_count(argv[1], "N") : 1000;
    const char *path = argc > 2 ? argv[2] : "/bin/true";
    char *cargv[] = { (char *)path, NULL };
    long started = 0, ok = 0, failed = 0;
    gate_wait();
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0) { failed++; continue; }
        if (p == 0) {
            execve(path, cargv, environ);
            _exit(127);
        }
        started++;
        int st;
        pid_t w;
        do {
            w = waitpid(p, &st, 0);
        } while (w < 0 && errno == EINTR);
        if (w == p && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            ok++;
        else
            failed++;
    }
    uint64_t t1 = now_ns();
    printf("RESULT workload=forkexec calls=%ld children=%ld children_ok=%ld failed=%ld "
           "ns_total=%llu ns_per_call=%.2f",
           n, started, ok, failed, (unsigned long long)(t1 - t0), (double)(t1 - t0) / n);
    print_rusage_tail();
    return failed ? 1 : 0;
}
