/* A workload whose syscalls are known exactly, for tests/test_trace.py.
 * usage: known DIR PORT — DIR/input.txt must hold 2000 bytes; a TCP listener on 127.0.0.1:PORT. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char path[4096], buf[4096];
	struct sockaddr_in sin = {.sin_family = AF_INET};
	int in, out, sock, status;
	pid_t child;

	if (argc != 3)
		return 2;
	snprintf(path, sizeof(path), "%s/input.txt", argv[1]);
	in = open(path, O_RDONLY);
	if (read(in, buf, 1234) != 1234 || read(in, buf, 4096) != 766 || read(in, buf, 4096) != 0)
		return 10;
	snprintf(path, sizeof(path), "%s/output.txt", argv[1]);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	memset(buf, 'x', 56);
	if (write(out, buf, 56) != 56)
		return 11;
	close(in);
	close(out);
	snprintf(path, sizeof(path), "%s/missing.txt", argv[1]);
	if (open(path, O_RDONLY) != -1 || errno != ENOENT)
		return 12;

	sock = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_port = htons(atoi(argv[2]));
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (connect(sock, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		return 13;
	if (write(sock, "hello\n", 6) != 6)
		return 14;
	close(sock);

	child = fork();
	if (child == 0) {
		execl("/bin/true", "true", "--swatch-test", (char *)NULL);
		_exit(99);
	}
	waitpid(child, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 15;
	snprintf(path, sizeof(path), "%s/output.txt", argv[1]);
	if (unlink(path) != 0)
		return 16;
	return 3;
}
