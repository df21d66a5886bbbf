/* usage: counts N M K — waits for a byte on stdin, then does exactly N read()s of M bytes
 * from /dev/zero and K open()s of a path that does not exist; for tests/test_summary.py. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char buf[1 << 20];
	long n, m, k;
	char go;
	int fd;

	if (argc != 4)
		return 2;
	n = atol(argv[1]);
	m = atol(argv[2]);
	k = atol(argv[3]);
	if (m > (long)sizeof(buf) || read(0, &go, 1) != 1)
		return 3;
	fd = open("/dev/zero", O_RDONLY);
	for (long i = 0; i < n; i++)
		if (read(fd, buf, m) != m)
			return 4;
	for (long i = 0; i < k; i++)
		if (open("/nonexistent/swatch-counts", O_RDONLY) >= 0)
			return 5;
	return 0;
}
