/* startup_bench.py's CMD: prints CLOCK_MONOTONIC at the top of main (static: no loader), so
 * the harness can tell how long after it started `swatch run` the command began to run. */
#include <stdio.h>
#include <time.h>

int main(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	printf("%lld\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
	return 0;
}
