/* File and network operations through io_uring (liburing), one at a time, never through the
 * syscalls that would do the same work: what swatch's io_uring programs must report.
 *   uring_ops files DIR PORT   DIR/in.txt must exist; a TCP listener on 127.0.0.1:PORT
 *   uring_ops sqpoll DIR       the same kind of work on an IORING_SETUP_SQPOLL ring
 *   uring_ops one OP PATH [sqpoll]   one operation: OP is openw (open for writing, creating),
 *                              openr, unlink or mkdir; exits with its errno (0: it succeeded)
 * Prints one line per operation: `NAME RESULT` (the cqe's res), and exits 0, or 99 if
 * io_uring is unusable. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/stat.h>
#include <sys/stat.h>
#include <unistd.h>

static struct io_uring ring;

/* Submit the one prepared sqe, wait for its completion, print and return its result. */
static int run(const char *name)
{
	struct io_uring_cqe *cqe;
	int res;

	if (io_uring_submit_and_wait(&ring, 1) < 0 || io_uring_wait_cqe(&ring, &cqe) < 0) {
		fprintf(stderr, "%s: io_uring unusable\n", name);
		exit(99);
	}
	res = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	printf("%s %d\n", name, res);
	fflush(stdout);
	return res;
}

static char path_buf[4][512];

static const char *in(const char *dir, int slot, const char *name)
{
	snprintf(path_buf[slot], sizeof(path_buf[slot]), "%s/%s", dir, name);
	return path_buf[slot];
}

static int files(const char *dir, int port)
{
	static char buf[4096];
	static const char out_text[] = "0123456789";
	struct statx stx;
	struct sockaddr_in sin;
	int rfd, wfd, sock;

	io_uring_prep_openat(io_uring_get_sqe(&ring), AT_FDCWD, in(dir, 0, "in.txt"), O_RDONLY, 0);
	rfd = run("openat_in");
	io_uring_prep_read(io_uring_get_sqe(&ring), rfd, buf, sizeof(buf), 0);
	run("read");
	io_uring_prep_openat(io_uring_get_sqe(&ring), AT_FDCWD, in(dir, 0, "out.txt"),
			     O_WRONLY | O_CREAT | O_TRUNC, 0644);
	wfd = run("openat_out");
	io_uring_prep_write(io_uring_get_sqe(&ring), wfd, out_text, 10, 0);
	run("write");
	io_uring_prep_close(io_uring_get_sqe(&ring), rfd);
	run("close_in");
	io_uring_prep_close(io_uring_get_sqe(&ring), wfd);
	run("close_out");
	io_uring_prep_openat(io_uring_get_sqe(&ring), AT_FDCWD, in(dir, 0, "missing"), O_RDONLY, 0);
	run("openat_missing");
	io_uring_prep_statx(io_uring_get_sqe(&ring), AT_FDCWD, in(dir, 0, "in.txt"), 0,
			    STATX_SIZE, &stx);
	run("statx");
	io_uring_prep_mkdirat(io_uring_get_sqe(&ring), AT_FDCWD, in(dir, 0, "sub"), 0755);
	run("mkdirat");
	io_uring_prep_renameat(io_uring_get_sqe(&ring), AT_FDCWD, in(dir, 0, "out.txt"), AT_FDCWD,
			       in(dir, 1, "sub/moved.txt"), 0);
	run("renameat");
	io_uring_prep_unlinkat(io_uring_get_sqe(&ring), AT_FDCWD, in(dir, 0, "sub/moved.txt"), 0);
	run("unlinkat");
	io_uring_prep_read(io_uring_get_sqe(&ring), 999, buf, sizeof(buf), 0);
	run("read_badfd");
	sock = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	io_uring_prep_connect(io_uring_get_sqe(&ring), sock, (struct sockaddr *)&sin, sizeof(sin));
	run("connect");
	io_uring_prep_send(io_uring_get_sqe(&ring), sock, "ping\n", 5, 0);
	run("send");
	close(sock);
	return 0;
}

static int sqpoll(const char *dir)
{
	static char buf[4096];
	int rfd;

	io_uring_prep_openat(io_uring_get_sqe(&ring), AT_FDCWD, in(dir, 0, "in.txt"), O_RDONLY, 0);
	rfd = run("openat_in");
	io_uring_prep_read(io_uring_get_sqe(&ring), rfd, buf, sizeof(buf), 0);
	run("read");
	io_uring_prep_close(io_uring_get_sqe(&ring), rfd);
	run("close_in");
	return 0;
}

static int one(const char *op, const char *path)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	int res;

	if (strcmp(op, "openw") == 0)
		io_uring_prep_openat(sqe, AT_FDCWD, path, O_WRONLY | O_CREAT, 0644);
	else if (strcmp(op, "openr") == 0)
		io_uring_prep_openat(sqe, AT_FDCWD, path, O_RDONLY, 0);
	else if (strcmp(op, "unlink") == 0)
		io_uring_prep_unlinkat(sqe, AT_FDCWD, path, 0);
	else if (strcmp(op, "mkdir") == 0)
		io_uring_prep_mkdirat(sqe, AT_FDCWD, path, 0755);
	else
		return 2;
	res = run(op);
	return res < 0 ? -res : 0;
}

int main(int argc, char **argv)
{
	struct io_uring_params p;
	int sq = argc > 2 && strcmp(argv[1], "sqpoll") == 0;

	if (argc > 3 && strcmp(argv[1], "one") == 0) {
		memset(&p, 0, sizeof(p));
		if (argc > 4 && strcmp(argv[4], "sqpoll") == 0) {
			p.flags = IORING_SETUP_SQPOLL;
			p.sq_thread_idle = 2000;
		}
		if (io_uring_queue_init_params(8, &ring, &p) < 0)
			return 99;
		return one(argv[2], argv[3]);
	}
	if (argc < 3 || (!sq && argc < 4)) {
		fprintf(stderr, "usage: uring_ops files DIR PORT | uring_ops sqpoll DIR\n");
		return 2;
	}
	memset(&p, 0, sizeof(p));
	if (sq) {
		p.flags = IORING_SETUP_SQPOLL;
		p.sq_thread_idle = 2000;
	}
	if (io_uring_queue_init_params(8, &ring, &p) < 0) {
		fprintf(stderr, "io_uring_queue_init failed\n");
		return 99;
	}
	if (sq)
		sqpoll(argv[2]);
	else
		files(argv[2], atoi(argv[3]));
	io_uring_queue_exit(&ring);
	return 0;
}
