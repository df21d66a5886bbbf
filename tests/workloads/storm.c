/* usage: storm getppid|read N [gate] — N back-to-back syscalls, for the drop tests; with
 * "gate", first wait for a byte on stdin (so a test can stop the consumer before the storm). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 100000;
	char c;
	int fd = open("/dev/zero", O_RDONLY);

	if (argc < 2)
		return 2;
	if (argc > 3 && strcmp(argv[3], "gate") == 0 && read(0, &c, 1) != 1)
		return 3;
	for (long i = 0; i < n; i++) {
		if (strcmp(argv[1], "read") == 0)
			read(fd, &c, 1);
		else
			syscall(SYS_getppid);
	}
	return 0;
}
