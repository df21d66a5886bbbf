/* Compiled into the cffi extension (see _build.py). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <bpf/libbpf.h>

#include "watcher.h"
#include "_shim.h"

/* ---------------------------------------------------------------- consumer */

/* Our callback's "batch full" return. libbpf stops only on a negative return and hands
 * it back from ring_buffer__poll(), so it must be negative and never a real -errno. */
#define SW_STOP_BATCH (-100000)

struct sw_consumer {
	struct ring_buffer *rb;
	char *buf;
	size_t cap;
	size_t len;
	int records;
	int more;               /* the last batch stopped full: records are still queued */
	uint64_t delivered[SW_EV_TYPES];
};

static const size_t sw_max_record = sizeof(struct sw_syscall_event) > sizeof(struct sw_exec_event)
					    ? sizeof(struct sw_syscall_event)
					    : sizeof(struct sw_exec_event);

/* The sample is only valid during the callback: copy it out, and ask libbpf
 * to stop while one maximum-size record still fits. */
static int sw_on_sample(void *ctx, void *data, size_t size)
{
	struct sw_consumer *c = ctx;
	const struct sw_event_hdr *h = data;
	size_t padded = (size + 7) & ~(size_t)7;

	if (size < sizeof(*h) || h->size > size)
		return 0;
	if (c->len + padded > c->cap) /* cannot happen: we stop with room for the largest */
		abort();
	memcpy(c->buf + c->len, data, size);
	c->len += padded;
	c->records++;
	if (h->type < SW_EV_TYPES)
		c->delivered[h->type]++;
	if (c->cap - c->len < sw_max_record + 8)
		return SW_STOP_BATCH;
	return 0;
}

struct sw_consumer *sw_consumer_new(int ring_fd, size_t cap)
{
	struct sw_consumer *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (cap < 4 * sw_max_record)
		cap = 4 * sw_max_record;
	c->cap = cap;
	c->buf = malloc(cap);
	if (!c->buf) {
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	c->rb = ring_buffer__new(ring_fd, sw_on_sample, c, NULL);
	if (!c->rb) {
		int err = errno;

		free(c->buf);
		free(c);
		errno = err;
		return NULL;
	}
	return c;
}

void sw_consumer_free(struct sw_consumer *c)
{
	if (!c)
		return;
	ring_buffer__free(c->rb);
	free(c->buf);
	free(c);
}

static int sw_batch_result(struct sw_consumer *c, int err)
{
	if (err == SW_STOP_BATCH || err >= 0 || err == -EINTR)
		return c->records;
	return err;
}

/* Wait up to timeout_ms for a wakeup, then take what is queued either way: the kernel sends
 * with BPF_RB_NO_WAKEUP until wakeup_bytes are queued, and epoll never reports those records,
 * so a timeout is when a quiet stream's records are read (that bounds their latency). While
 * the last batch stopped full there is no wait at all. */
int sw_consumer_poll(struct sw_consumer *c, int timeout_ms)
{
	int err;

	c->len = 0;
	c->records = 0;
	if (!c->more) {
		err = ring_buffer__poll(c->rb, timeout_ms);
		if (err == SW_STOP_BATCH) {
			c->more = 1;
			return c->records;
		}
		if (err < 0 && err != -EINTR)
			return err;
	}
	err = ring_buffer__consume(c->rb);
	c->more = err == SW_STOP_BATCH;
	return sw_batch_result(c, err);
}

int sw_consumer_drain(struct sw_consumer *c)
{
	int err;

	c->len = 0;
	c->records = 0;
	err = ring_buffer__consume(c->rb);
	c->more = err == SW_STOP_BATCH;
	return sw_batch_result(c, err);
}

size_t sw_count_lines(const char *buf, size_t len)
{
	const char *end = buf + len;
	size_t n = 0;

	while (buf < end && (buf = memchr(buf, '\n', (size_t)(end - buf))) != NULL) {
		n++;
		buf++;
	}
	return n;
}

size_t sw_batch_until(const char *recs, size_t len, size_t pos, uint64_t ktime_ns)
{
	while (pos + sizeof(struct sw_event_hdr) <= len) {
		const struct sw_event_hdr *h = (const void *)(recs + pos);

		if (h->size == 0 || h->ktime_ns > ktime_ns)
			return pos;
		pos += ((size_t)h->size + 7) & ~(size_t)7;
	}
	return len;
}

const char *sw_consumer_data(struct sw_consumer *c) { return c->buf; }
size_t sw_consumer_len(struct sw_consumer *c) { return c->len; }

uint64_t sw_consumer_delivered(struct sw_consumer *c, int type)
{
	return type >= 0 && type < SW_EV_TYPES ? c->delivered[type] : 0;
}

/* --------------------------------------------------------------- formatter */

struct sw_sc_fmt {
	char name[32];
	uint8_t verb;
	uint8_t flags;
};

static struct sw_sc_fmt sw_sc[SW_MAX_SYSCALLS];
static char sw_errname[4096][16];
static int64_t sw_clock_offset;
static int sw_utc_offset;
static struct sw_fmt_opts sw_opts = {.show_types = 0x1e};
static uint64_t sw_last_ktime; /* -r: the previous human line's time */

/* Start-up folding: a new image's EXEC line is held while its dynamic loader and locale
 * start-up run, counted, and written when the process does something else (or ages). */
#define SW_HELD 64
struct sw_held {
	uint32_t pid;           /* 0: free */
	uint32_t libs;          /* shared libraries opened */
	uint32_t locale;        /* locale and gconv files opened */
	uint32_t folded;        /* every start-up record folded into the line */
	struct sw_exec_event ev;
};
static struct sw_held sw_held[SW_HELD];

#define SW_LABELS 64
static struct {
	uint64_t id;
	char label[80];
} sw_labels[SW_LABELS];

static const char *const sw_verb_name[SW_VERBS] = {
	"SYSCALL", "OPEN", "READ", "WRITE", "CLOSE", "SOCKET", "CONNECT", "BIND", "LISTEN",
	"ACCEPT", "SPAWN", "DELETE", "RENAME", "MKDIR", "RMDIR", "CHDIR", "STAT", "EXEC",
	"LINK", "KILL", "CHMOD", "DUP",
};

static const char *const sw_fd_kind[] = {
	"", "file", "tcp", "udp", "unix", "pipe", "socket", "anon", "bad",
};

static const char *const sw_fd_label[] = {
	"", "", "TCP", "UDP", "UNIX", "pipe", "socket", "", "bad fd",
};

void sw_fmt_reset(void)
{
	memset(sw_sc, 0, sizeof(sw_sc));
	memset(sw_errname, 0, sizeof(sw_errname));
	memset(sw_held, 0, sizeof(sw_held));
	sw_last_ktime = 0;
}

void sw_fmt_set_options(const struct sw_fmt_opts *opts)
{
	sw_opts = *opts;
	memset(sw_held, 0, sizeof(sw_held));
	sw_last_ktime = 0;
}

void sw_fmt_set_syscall(uint32_t nr, const char *name, uint8_t verb, uint8_t flags)
{
	if (nr >= SW_MAX_SYSCALLS)
		return;
	snprintf(sw_sc[nr].name, sizeof(sw_sc[nr].name), "%s", name);
	sw_sc[nr].verb = verb < SW_VERBS ? verb : SW_VERB_GENERIC;
	sw_sc[nr].flags = flags;
}

void sw_fmt_set_errno(int err, const char *name)
{
	if (err > 0 && err < 4096)
		snprintf(sw_errname[err], sizeof(sw_errname[err]), "%s", name);
}

void sw_fmt_set_clock(int64_t offset_ns, int utc_offset_s)
{
	sw_clock_offset = offset_ns;
	sw_utc_offset = utc_offset_s;
}

void sw_fmt_set_cgroup_label(uint64_t id, const char *label)
{
	for (int i = 0; i < SW_LABELS; i++) {
		if (sw_labels[i].id == id || sw_labels[i].id == 0) {
			sw_labels[i].id = id;
			snprintf(sw_labels[i].label, sizeof(sw_labels[i].label), "%s", label);
			return;
		}
	}
}

static const char *sw_cgroup_label(uint64_t id)
{
	for (int i = 0; i < SW_LABELS && sw_labels[i].id; i++)
		if (sw_labels[i].id == id)
			return sw_labels[i].label;
	return NULL;
}

struct sw_out {
	char *p;
	char *end;
};

static void put(struct sw_out *o, const char *s, size_t n)
{
	if ((size_t)(o->end - o->p) < n)
		n = o->end - o->p;
	memcpy(o->p, s, n);
	o->p += n;
}

static void puts_(struct sw_out *o, const char *s) { put(o, s, strlen(s)); }

static void putf(struct sw_out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->p, o->end - o->p, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > o->end - o->p)
		n = o->end - o->p;
	o->p += n;
}

static void put_u64(struct sw_out *o, uint64_t v)
{
	char tmp[24];
	int i = sizeof(tmp);

	do {
		tmp[--i] = '0' + v % 10;
		v /= 10;
	} while (v);
	put(o, tmp + i, sizeof(tmp) - i);
}

static void put_i64(struct sw_out *o, int64_t v)
{
	if (v < 0) {
		put(o, "-", 1);
		put_u64(o, (uint64_t)0 - (uint64_t)v);
	} else {
		put_u64(o, v);
	}
}

/* Where a string lost bytes, so the "..." mark goes where the cut is. */
#define SW_CUT_NONE 0
#define SW_CUT_END 1  /* read head-first (a user string): the tail is missing, "/head..." */
#define SW_CUT_HEAD 2 /* walked leaf-first (a dentry path): the head is missing, ".../tail" */

/* Length of a well-formed UTF-8 sequence at s (n bytes left) and its code point; 0 if the
 * byte at s does not start one. Strict, as Python's decoder: no overlong forms, no
 * surrogates, nothing above U+10FFFF — so every byte we call invalid is one Python's
 * surrogateescape turns into U+DC80..U+DCFF too. */
static int utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	uint32_t v;
	int len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c < 0xc2 || c > 0xf4)
		return 0;
	if (c < 0xe0) {
		len = 2;
		v = c & 0x1f;
	} else if (c < 0xf0) {
		len = 3;
		v = c & 0x0f;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else {
		len = 4;
		v = c & 0x07;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	}
	if ((size_t)len > n || s[1] < lo || s[1] > hi)
		return 0;
	v = (v << 6) | (s[1] & 0x3f);
	for (int i = 2; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	*cp = v;
	return len;
}

static const char sw_hex[] = "0123456789abcdef";

/* A JSON string (with quotes) of s[0..n) up to its first NUL. Well-formed UTF-8 is copied;
 * each byte that is not becomes \udcXX (Python's surrogateescape: json.loads(line)[k]
 * .encode("utf-8", "surrogateescape") gives the original bytes back). cut puts "..." where
 * bytes were lost. */
static void put_json_str(struct sw_out *o, const char *s, size_t n, int cut)
{
	const unsigned char *u = (const unsigned char *)s;

	put(o, "\"", 1);
	if (cut == SW_CUT_HEAD)
		put(o, "...", 3);
	for (size_t i = 0; i < n && u[i];) {
		unsigned char ch = u[i];
		uint32_t cp;
		int len = utf8_len(&u[i], n - i, &cp);

		if (ch == '"' || ch == '\\') {
			char esc[2] = {'\\', (char)ch};
			put(o, esc, 2);
		} else if (ch == '\n') {
			put(o, "\\n", 2);
		} else if (ch == '\t') {
			put(o, "\\t", 2);
		} else if (ch < 0x20 || ch == 0x7f) {
			char esc[6] = {'\\', 'u', '0', '0', sw_hex[ch >> 4], sw_hex[ch & 15]};
			put(o, esc, 6);
		} else if (len) {
			put(o, (const char *)&u[i], len);
			i += len;
			continue;
		} else {
			char esc[6] = {'\\', 'u', 'd', 'c', sw_hex[ch >> 4], sw_hex[ch & 15]};
			put(o, esc, 6);
		}
		i++;
	}
	if (cut == SW_CUT_END)
		put(o, "...", 3);
	put(o, "\"", 1);
}

/* Code points a terminal acts on rather than shows: C1 controls and the bidirectional
 * overrides and isolates (which reorder what follows them on the line). */
static int unsafe_cp(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e || cp == 0x200f || cp == 0x061c;
}

/* s[0..n) (up to its first NUL) for a human line, without quotes: C0 controls, DEL,
 * backslash (and '"' when quoted) as \xNN, bytes that are not UTF-8 as \xNN, C1 and
 * bidirectional controls as \uNNNN; everything else as is. A workload cannot move the
 * cursor, recolour or reorder the operator's terminal through any field. */
static void put_human_text(struct sw_out *o, const char *s, size_t n, int quoted)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0; i < n && u[i];) {
		uint32_t cp;
		int len = utf8_len(&u[i], n - i, &cp);

		if (!len || cp < 0x20 || cp == 0x7f || cp == '\\' || (quoted && cp == '"')) {
			char esc[4] = {'\\', 'x', sw_hex[u[i] >> 4], sw_hex[u[i] & 15]};
			put(o, esc, 4);
			i++;
		} else if (unsafe_cp(cp)) {
			putf(o, "\\u%04x", (unsigned)cp);
			i += len;
		} else {
			put(o, (const char *)&u[i], len);
			i += len;
		}
	}
}

/* A string for a human line: quoted, escaped (put_human_text), "..." where it was cut. */
static void put_human_str(struct sw_out *o, const char *s, size_t n, int cut)
{
	if (sw_opts.strsize && strnlen(s, n) > sw_opts.strsize) { /* -s N */
		n = sw_opts.strsize;
		if (cut == SW_CUT_NONE)
			cut = SW_CUT_END;
	}
	put(o, "\"", 1);
	if (cut == SW_CUT_HEAD)
		put(o, "...", 3);
	put_human_text(o, s, n, 1);
	if (cut == SW_CUT_END)
		put(o, "...", 3);
	put(o, "\"", 1);
}


static void put_errno(struct sw_out *o, int64_t ret)
{
	int e = (int)-ret;

	if (e > 0 && e < 4096 && sw_errname[e][0])
		puts_(o, sw_errname[e]);
	else
		putf(o, "E%d", e);
}

static int is_err(int64_t ret) { return ret < 0 && ret >= -4095; }

/* Render a sockaddr; returns its family name for JSON, NULL if unusable. */
static const char *fmt_sockaddr(const uint8_t *a, size_t len, char *dst, size_t cap)
{
	uint16_t family;

	if (len < 2)
		return NULL;
	memcpy(&family, a, 2);
	if (family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin;
		char ip[INET_ADDRSTRLEN];

		memcpy(&sin, a, sizeof(sin));
		inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof(ip));
		snprintf(dst, cap, "%s:%u", ip, ntohs(sin.sin_port));
		return "inet";
	}
	if (family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sin6;
		char ip[INET6_ADDRSTRLEN];

		memcpy(&sin6, a, sizeof(sin6));
		inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof(ip));
		snprintf(dst, cap, "[%s]:%u", ip, ntohs(sin6.sin6_port));
		return "inet6";
	}
	if (family == AF_UNIX) {
		const char *path = (const char *)a + 2;
		size_t n = len - 2;

		if (n == 0) {
			snprintf(dst, cap, "(unnamed)");
		} else if (path[0] == 0) {
			size_t k = n - 1 < cap - 2 ? n - 1 : cap - 2;

			dst[0] = '@';
			for (size_t i = 0; i < k; i++)
				dst[1 + i] = path[1 + i] ? path[1 + i] : '@';
			dst[1 + k] = 0;
		} else {
			size_t k = strnlen(path, n);

			snprintf(dst, cap, "%.*s", (int)k, path);
		}
		return "unix";
	}
	if (family == AF_NETLINK) {
		snprintf(dst, cap, "netlink");
		return "netlink";
	}
	snprintf(dst, cap, "family %u", family);
	return "other";
}

static const char *sig_name(int sig)
{
	static const char *const names[] = {
		"0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS",
		"SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM",
		"SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN",
		"SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH",
		"SIGIO", "SIGPWR", "SIGSYS",
	};

	return sig > 0 && sig < 32 ? names[sig] : "SIG?";
}

#define C_RESET "\033[0m"
#define C_DIM "\033[2m"
#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_YELLOW "\033[33m"
#define C_BLUE "\033[34m"
#define C_MAGENTA "\033[35m"
#define C_CYAN "\033[36m"

static const char *verb_color(int verb)
{
	switch (verb) {
	case SW_VERB_EXEC: return C_GREEN;
	case SW_VERB_OPEN: case SW_VERB_CLOSE: case SW_VERB_STAT: return C_CYAN;
	case SW_VERB_CONNECT: case SW_VERB_BIND: case SW_VERB_LISTEN: case SW_VERB_ACCEPT:
	case SW_VERB_SOCKET: return C_MAGENTA;
	case SW_VERB_DELETE: case SW_VERB_RENAME: case SW_VERB_RMDIR: case SW_VERB_KILL:
		return C_YELLOW;
	case SW_VERB_SPAWN: return C_BLUE;
	default: return "";
	}
}

/* The time at the start of a human line, in the style -t/-tt/-ttt/-r asked for. */
static void put_time(struct sw_out *o, uint64_t ktime, int64_t local_ns, int s, int ms)
{
	int64_t real = (int64_t)ktime + sw_clock_offset;
	int us = (int)((local_ns / 1000) % 1000000);

	switch (sw_opts.ts_style) {
	case SW_TS_SEC:
		putf(o, "%02d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
		break;
	case SW_TS_US:
		putf(o, "%02d:%02d:%02d.%06d", s / 3600, (s / 60) % 60, s % 60, us);
		break;
	case SW_TS_EPOCH:
		putf(o, "%lld.%06d", (long long)(real / 1000000000LL), (int)((real / 1000) % 1000000));
		break;
	case SW_TS_REL: {
		uint64_t d = sw_last_ktime && ktime > sw_last_ktime ? ktime - sw_last_ktime : 0;

		putf(o, "%6llu.%06u", (unsigned long long)(d / 1000000000ULL),
		     (unsigned)((d / 1000) % 1000000));
		if (ktime > sw_last_ktime)
			sw_last_ktime = ktime;
		break;
	}
	default:
		putf(o, "%02d:%02d:%02d.%03d", s / 3600, (s / 60) % 60, s % 60, ms);
	}
}

static void human_prefix(struct sw_out *o, const struct sw_event_hdr *h, int color)
{
	int64_t ns = (int64_t)h->ktime_ns + sw_clock_offset + (int64_t)sw_utc_offset * 1000000000LL;
	int64_t secs = ns / 1000000000LL;
	int ms = (int)((ns / 1000000LL) % 1000);
	int s = (int)(secs % 86400);
	const char *label = sw_cgroup_label(h->cgroup_id);

	char *comm_at;

	if (color)
		puts_(o, C_DIM);
	put_time(o, h->ktime_ns, ns, s, ms);
	putf(o, " %-7u ", h->pid);
	comm_at = o->p;
	put_human_text(o, h->comm, sizeof(h->comm), 0);
	for (long w = o->p - comm_at; w < 15; w++)
		put(o, " ", 1);
	put(o, " ", 1);
	if (label) {
		put(o, "[", 1);
		put_human_text(o, label, strlen(label), 0);
		put(o, "] ", 2);
	}
	if (color)
		puts_(o, C_RESET);
}

static void human_verb(struct sw_out *o, const char *verb, int colorful, const char *col)
{
	if (colorful && col[0])
		putf(o, "%s%-7s%s ", col, verb, C_RESET);
	else
		putf(o, "%-7s ", verb);
}

struct sw_sc_view {
	const struct sw_syscall_event *ev;
	const char *path, *path2, *fdname;
	const uint8_t *addr;
	char addrbuf[160];
	const char *family;
};

static void view_syscall(const struct sw_syscall_event *ev, struct sw_sc_view *v)
{
	size_t off = 0, max = sizeof(ev->data);

	memset(v, 0, sizeof(*v));
	v->ev = ev;
	if (ev->path_len && off + ev->path_len <= max) {
		v->path = (const char *)ev->data + off;
		off += ev->path_len;
	}
	if (ev->path2_len && off + ev->path2_len <= max) {
		v->path2 = (const char *)ev->data + off;
		off += ev->path2_len;
	}
	if (ev->fdname_len && off + ev->fdname_len <= max) {
		v->fdname = (const char *)ev->data + off;
		off += ev->fdname_len;
	}
	if (ev->addr_len && off + ev->addr_len <= max) {
		v->addr = ev->data + off;
		v->family = fmt_sockaddr(v->addr, ev->addr_len, v->addrbuf, sizeof(v->addrbuf));
	}
}

/* User strings are read head-first (bpf_probe_read_user_str): a cut loses their end. */
static int path_cut(const struct sw_syscall_event *ev, int flag)
{
	return ev->flags & flag ? SW_CUT_END : SW_CUT_NONE;
}

/* fd names are walked from the file up to the root (bpf/include/vfs_path.bpf.h): a cut loses
 * the components nearest the root, so the path shown is the tail of the real one. */
static int fdname_cut(const struct sw_syscall_event *ev)
{
	return ev->flags & SW_F_FDNAME_TRUNC ? SW_CUT_HEAD : SW_CUT_NONE;
}

/* A socket address for a human line (a unix path is any bytes: escaped). */
static void put_addr(struct sw_out *o, const struct sw_sc_view *v)
{
	put_human_text(o, v->addrbuf, strlen(v->addrbuf), 0);
}

/* The name of the fd argument as a human line shows it. */
static void put_fd_name(struct sw_out *o, const struct sw_sc_view *v)
{
	const struct sw_syscall_event *ev = v->ev;

	if (v->fdname)
		put_human_str(o, v->fdname, ev->fdname_len, fdname_cut(ev));
	else if (ev->fd_kind < sizeof(sw_fd_label) / sizeof(sw_fd_label[0]) && sw_fd_label[ev->fd_kind][0])
		putf(o, "\"%s\"", sw_fd_label[ev->fd_kind]);
	else
		putf(o, "fd %d", (int)ev->args[0]);
}

static void human_result(struct sw_out *o, int64_t ret, int color)
{
	if (is_err(ret)) {
		if (color)
			puts_(o, C_RED);
		put_errno(o, ret);
		if (color)
			puts_(o, C_RESET);
	} else {
		put_i64(o, ret);
	}
}

static void human_syscall(struct sw_out *o, const struct sw_syscall_event *ev, int color)
{
	const struct sw_sc_fmt *f = &sw_sc[ev->nr < SW_MAX_SYSCALLS ? ev->nr : 0];
	struct sw_sc_view v;
	int64_t ret = ev->ret;
	int err = is_err(ret);
	int verb = f->verb;
	const char *vname = sw_verb_name[verb];

	view_syscall(ev, &v);
	if (verb == SW_VERB_READ && !err && ret == 0)
		vname = "READ";
	human_verb(o, vname, color, err ? C_RED : verb_color(verb));

	switch (verb) {
	case SW_VERB_OPEN:
		put_human_str(o, v.path ? v.path : "", ev->path_len, path_cut(ev, SW_F_PATH_TRUNC));
		puts_(o, " -> ");
		if (err)
			human_result(o, ret, color);
		else
			putf(o, "fd %lld", (long long)ret);
		break;
	case SW_VERB_READ:
	case SW_VERB_WRITE:
		if (err) {
			puts_(o, verb == SW_VERB_READ ? "from " : "to ");
			put_fd_name(o, &v);
			puts_(o, " -> ");
			human_result(o, ret, color);
		} else if (verb == SW_VERB_READ && ret == 0 && (f->flags & SW_FMT_BYTES)) {
			puts_(o, "EOF on ");
			put_fd_name(o, &v);
		} else if (v.path && !v.fdname && ev->fd_kind == SW_FD_NONE) {
			put_human_str(o, v.path, ev->path_len, path_cut(ev, SW_F_PATH_TRUNC));
			putf(o, " = %lld", (long long)ret);
		} else {
			putf(o, "%lld %s ", (long long)ret,
			     (f->flags & SW_FMT_BYTES) ? (ret == 1 ? "byte" : "bytes") : "entries");
			puts_(o, verb == SW_VERB_READ ? "from " : "to ");
			put_fd_name(o, &v);
			if (v.family) {
				puts_(o, " (");
				put_addr(o, &v);
				puts_(o, ")");
			}
		}
		break;
	case SW_VERB_CLOSE:
		put_fd_name(o, &v);
		if (err) {
			puts_(o, " -> ");
			human_result(o, ret, color);
		}
		break;
	case SW_VERB_SOCKET:
		puts_(o, "-> ");
		if (err)
			human_result(o, ret, color);
		else
			putf(o, "fd %lld", (long long)ret);
		break;
	case SW_VERB_CONNECT:
	case SW_VERB_BIND:
		putf(o, "fd %d -> ", (int)ev->args[0]);
		if (v.family)
			put_addr(o, &v);
		else
			puts_(o, "?");
		puts_(o, " ");
		if (err)
			human_result(o, ret, color);
		else
			puts_(o, color ? C_GREEN "OK" C_RESET : "OK");
		break;
	case SW_VERB_LISTEN:
		putf(o, "fd %d", (int)ev->args[0]);
		if (err) {
			puts_(o, " -> ");
			human_result(o, ret, color);
		}
		break;
	case SW_VERB_ACCEPT:
		putf(o, "fd %d -> ", (int)ev->args[0]);
		if (err) {
			human_result(o, ret, color);
		} else {
			putf(o, "fd %lld", (long long)ret);
			if (v.family) {
				puts_(o, " from ");
				put_addr(o, &v);
			}
		}
		break;
	case SW_VERB_SPAWN: {
		uint64_t flags = ev->aux ? ev->aux : ev->args[0];
		int thread = (ev->aux || strcmp(f->name, "clone") == 0) && (flags & 0x00010000);

		if (err)
			human_result(o, ret, color);
		else
			putf(o, "%s %lld", thread ? "thread tid" : "child pid", (long long)ret);
		break;
	}
	case SW_VERB_DELETE:
	case SW_VERB_MKDIR:
	case SW_VERB_RMDIR:
	case SW_VERB_CHDIR:
	case SW_VERB_STAT:
	case SW_VERB_CHMOD:
	case SW_VERB_EXEC:
		/* fstat via newfstatat(fd, "", AT_EMPTY_PATH): the fd's name, not "" */
		if (v.path && !(ev->path_len <= 1 && (v.fdname || ev->fd_kind != SW_FD_NONE)))
			put_human_str(o, v.path, ev->path_len, path_cut(ev, SW_F_PATH_TRUNC));
		else
			put_fd_name(o, &v);
		if (err) {
			puts_(o, " -> ");
			human_result(o, ret, color);
		}
		if (verb == SW_VERB_EXEC && sw_opts.exec_view)
			putf(o, " (ppid %u)", ev->hdr.ppid);
		break;
	case SW_VERB_RENAME:
	case SW_VERB_LINK:
		put_human_str(o, v.path ? v.path : "", ev->path_len, path_cut(ev, SW_F_PATH_TRUNC));
		puts_(o, " -> ");
		put_human_str(o, v.path2 ? v.path2 : "", ev->path2_len, path_cut(ev, SW_F_PATH2_TRUNC));
		if (err) {
			puts_(o, " -> ");
			human_result(o, ret, color);
		}
		break;
	case SW_VERB_KILL:
		putf(o, "pid %lld %s", (long long)(int)ev->args[0],
		     sig_name((int)ev->args[ev->nr < SW_MAX_SYSCALLS && strcmp(f->name, "tgkill") == 0 ? 2 : 1]));
		if (err) {
			puts_(o, " -> ");
			human_result(o, ret, color);
		}
		break;
	case SW_VERB_DUP:
		put_fd_name(o, &v);
		puts_(o, " -> ");
		if (err)
			human_result(o, ret, color);
		else
			putf(o, "fd %lld", (long long)ret);
		break;
	default:
		putf(o, "%s(", f->name[0] ? f->name : "?");
		for (int i = 0; i < 3; i++)
			putf(o, i ? ", 0x%llx" : "0x%llx", (unsigned long long)ev->args[i]);
		puts_(o, ") = ");
		human_result(o, ret, color);
		if (v.fdname) {
			puts_(o, " on ");
			put_fd_name(o, &v);
		}
		break;
	}
}

static void json_hdr(struct sw_out *o, const struct sw_event_hdr *h, const char *type)
{
	const char *label = sw_cgroup_label(h->cgroup_id);

	puts_(o, "{\"type\":\"");
	puts_(o, type);
	puts_(o, "\",\"time_ns\":");
	put_i64(o, (int64_t)h->ktime_ns + sw_clock_offset);
	puts_(o, ",\"pid\":");
	put_u64(o, h->pid);
	puts_(o, ",\"tid\":");
	put_u64(o, h->tid);
	puts_(o, ",\"ppid\":");
	put_u64(o, h->ppid);
	puts_(o, ",\"uid\":");
	put_u64(o, h->uid);
	puts_(o, ",\"cgroup_id\":");
	put_u64(o, h->cgroup_id);
	puts_(o, ",\"comm\":");
	put_json_str(o, h->comm, sizeof(h->comm), SW_CUT_NONE);
	if (label) {
		puts_(o, ",\"container\":");
		put_json_str(o, label, strlen(label), SW_CUT_NONE);
	}
}

static void json_syscall(struct sw_out *o, const struct sw_syscall_event *ev)
{
	const struct sw_sc_fmt *f = &sw_sc[ev->nr < SW_MAX_SYSCALLS ? ev->nr : 0];
	struct sw_sc_view v;
	int64_t ret = ev->ret;

	view_syscall(ev, &v);
	json_hdr(o, &ev->hdr, "syscall");
	puts_(o, ",\"syscall\":");
	put_json_str(o, f->name, sizeof(f->name), SW_CUT_NONE);
	puts_(o, ",\"nr\":");
	put_u64(o, ev->nr);
	puts_(o, ",\"op\":\"");
	puts_(o, sw_verb_name[f->verb]);
	puts_(o, "\",\"ret\":");
	put_i64(o, ret);
	if (is_err(ret)) {
		puts_(o, ",\"error\":\"");
		put_errno(o, ret);
		puts_(o, "\"");
	} else if ((f->flags & SW_FMT_BYTES) && ret >= 0) {
		puts_(o, ",\"bytes\":");
		put_i64(o, ret);
	}
	if ((f->flags & SW_FMT_RET_FD) && ret >= 0) {
		puts_(o, ",\"new_fd\":");
		put_i64(o, ret);
	}
	if (f->verb == SW_VERB_SPAWN && ret > 0) {
		puts_(o, ",\"child_pid\":");
		put_i64(o, ret);
	}
	puts_(o, ",\"duration_ns\":");
	put_u64(o, ev->duration_ns);
	puts_(o, ",\"args\":[");
	for (int i = 0; i < 6; i++) {
		if (i)
			put(o, ",", 1);
		put_u64(o, ev->args[i]);
	}
	puts_(o, "]");
	if (v.path) {
		puts_(o, ",\"path\":");
		put_json_str(o, v.path, ev->path_len, path_cut(ev, SW_F_PATH_TRUNC));
	}
	if (v.path2) {
		puts_(o, ",\"path2\":");
		put_json_str(o, v.path2, ev->path2_len, path_cut(ev, SW_F_PATH2_TRUNC));
	}
	if (ev->fd_kind != SW_FD_NONE) {
		puts_(o, ",\"fd\":");
		put_i64(o, (int)ev->args[0]);
		puts_(o, ",\"fd_kind\":\"");
		puts_(o, ev->fd_kind < 9 ? sw_fd_kind[ev->fd_kind] : "?");
		puts_(o, "\"");
		if (v.fdname) {
			puts_(o, ",\"fd_name\":");
			put_json_str(o, v.fdname, ev->fdname_len, fdname_cut(ev));
		} else if (ev->fd_kind < 9 && sw_fd_label[ev->fd_kind][0]) {
			puts_(o, ",\"fd_name\":\"");
			puts_(o, sw_fd_label[ev->fd_kind]);
			puts_(o, "\"");
		}
	}
	if (v.family) {
		puts_(o, ",\"addr\":");
		put_json_str(o, v.addrbuf, strlen(v.addrbuf), SW_CUT_NONE);
		puts_(o, ",\"family\":\"");
		puts_(o, v.family);
		puts_(o, "\"");
	}
	if (ev->flags & (SW_F_PATH_TRUNC | SW_F_PATH2_TRUNC | SW_F_FDNAME_TRUNC)) {
		const char *sep = "";

		puts_(o, ",\"truncated\":true,\"truncated_fields\":[");
		if (v.path && (ev->flags & SW_F_PATH_TRUNC)) {
			puts_(o, "\"path\"");
			sep = ",";
		}
		if (v.path2 && (ev->flags & SW_F_PATH2_TRUNC)) {
			puts_(o, sep);
			puts_(o, "\"path2\"");
			sep = ",";
		}
		if (v.fdname && (ev->flags & SW_F_FDNAME_TRUNC)) {
			puts_(o, sep);
			puts_(o, "\"fd_name\"");
		}
		puts_(o, "]");
	}
	puts_(o, "}\n");
}

/* One exec argument as a shell would take it back: bare when it has nothing special,
 * else in double quotes with \" \\ \$ \` \n \t and \xHH for other control bytes. */
static void put_shell_word(struct sw_out *o, const char *s, size_t n, int cut)
{
	const unsigned char *u = (const unsigned char *)s;
	int bare;

	if (sw_opts.strsize && n > sw_opts.strsize) { /* -s N */
		n = sw_opts.strsize;
		if (cut == SW_CUT_NONE)
			cut = SW_CUT_END;
	}
	/* Bare when a shell would not quote it: letters, digits, _@%+=:,./- and printable
	 * UTF-8 beyond ASCII (never a control, a C1 or a bidirectional mark). */
	bare = n > 0 && cut != SW_CUT_HEAD;
	for (size_t i = 0; i < n && bare;) {
		uint32_t cp;
		int len = utf8_len(&u[i], n - i, &cp);

		if (len == 1)
			bare = (u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') ||
			       (u[i] >= '0' && u[i] <= '9') ||
			       (u[i] && strchr("_@%+=:,./-", u[i]) != NULL);
		else
			bare = len > 1 && cp >= 0xa0 && !unsafe_cp(cp);
		i += len ? len : 1;
	}
	if (bare) {
		put(o, s, n);
		if (cut == SW_CUT_END)
			put(o, "...", 3);
		return;
	}
	/* As a shell would quote it ("\"", "\\", "\$", "\`", "\n", "\t"), and as every human
	 * field is escaped: other controls and non-UTF-8 bytes \xNN, C1/bidi controls \uNNNN. */
	put(o, "\"", 1);
	if (cut == SW_CUT_HEAD)
		put(o, "...", 3);
	for (size_t i = 0; i < n && u[i];) {
		uint32_t cp;
		int len = utf8_len(&u[i], n - i, &cp);

		if (len == 1 && strchr("\"\\$`", u[i])) {
			char esc[2] = {'\\', (char)u[i]};
			put(o, esc, 2);
		} else if (len == 1 && u[i] == '\n') {
			put(o, "\\n", 2);
		} else if (len == 1 && u[i] == '\t') {
			put(o, "\\t", 2);
		} else if (!len || cp < 0x20 || cp == 0x7f) {
			char esc[4] = {'\\', 'x', sw_hex[u[i] >> 4], sw_hex[u[i] & 15]};
			put(o, esc, 4);
			i++;
			continue;
		} else if (unsafe_cp(cp)) {
			putf(o, "\\u%04x", (unsigned)cp);
		} else {
			put(o, (const char *)&u[i], len);
		}
		i += len ? len : 1;
	}
	if (cut == SW_CUT_END)
		put(o, "...", 3);
	put(o, "\"", 1);
}

static void human_exec(struct sw_out *o, const struct sw_exec_event *ev, int color,
		       const struct sw_held *fold)
{
	size_t fl = ev->filename_len, al = ev->argv_len;
	const char *argv = (const char *)ev->data + fl;
	size_t i = 0;
	int idx = 0;

	human_verb(o, "EXEC", color, C_GREEN);
	/* bprm->filename is read head-first: a cut loses its end. */
	put_shell_word(o, (const char *)ev->data, fl ? strnlen((const char *)ev->data, fl) : 0,
		       ev->flags & SW_F_PATH_TRUNC ? SW_CUT_END : SW_CUT_NONE);
	/* argv[0] is usually the program name again: show argv[1..]. */
	while (i < al) {
		size_t n = strnlen(argv + i, al - i);

		if (idx > 0) {
			put(o, " ", 1);
			put_shell_word(o, argv + i, n, SW_CUT_NONE);
		}
		i += n + 1;
		idx++;
	}
	if (ev->flags & SW_F_ARGV_TRUNC)
		puts_(o, " ...");
	if (sw_opts.exec_view)
		putf(o, " -> 0 (ppid %u)", ev->hdr.ppid);
	if (fold && fold->folded) {
		puts_(o, " (ld.so: ");
		if (fold->libs)
			putf(o, "%u %s", fold->libs, fold->libs == 1 ? "lib" : "libs");
		if (fold->libs && fold->locale)
			puts_(o, ", ");
		if (fold->locale)
			putf(o, "%u locale %s", fold->locale, fold->locale == 1 ? "file" : "files");
		putf(o, "%s%u start-up %s folded)", fold->libs || fold->locale ? "; " : "",
		     fold->folded, fold->folded == 1 ? "event" : "events");
	}
	if (sw_opts.ancestry) {
		int n = ev->ancestry_len < SW_ANCESTRY_MAX ? ev->ancestry_len : SW_ANCESTRY_MAX;

		puts_(o, "  [");
		for (int k = n - 1; k >= 0; k--) {
			put_human_text(o, ev->ancestry[k].comm, sizeof(ev->ancestry[k].comm), 0);
			putf(o, "(%u) \xe2\x86\x92 ", ev->ancestry[k].pid);
		}
		put_human_text(o, ev->hdr.comm, sizeof(ev->hdr.comm), 0);
		putf(o, "(%u)]", ev->hdr.pid);
	}
}

static void json_exec(struct sw_out *o, const struct sw_exec_event *ev)
{
	size_t fl = ev->filename_len, al = ev->argv_len;
	const char *argv = (const char *)ev->data + fl;
	size_t i = 0;
	int first = 1;

	json_hdr(o, &ev->hdr, "exec");
	puts_(o, ",\"filename\":");
	put_json_str(o, (const char *)ev->data, fl,
		     ev->flags & SW_F_PATH_TRUNC ? SW_CUT_END : SW_CUT_NONE);
	puts_(o, ",\"argc\":");
	put_u64(o, ev->argc);
	puts_(o, ",\"ancestry\":[");
	for (int k = (ev->ancestry_len < SW_ANCESTRY_MAX ? ev->ancestry_len : SW_ANCESTRY_MAX) - 1;
	     k >= 0; k--) {
		puts_(o, "{\"pid\":");
		put_u64(o, ev->ancestry[k].pid);
		puts_(o, ",\"comm\":");
		put_json_str(o, ev->ancestry[k].comm, sizeof(ev->ancestry[k].comm), SW_CUT_NONE);
		puts_(o, k ? "}," : "}");
	}
	puts_(o, "],\"argv\":[");
	while (i < al) {
		size_t n = strnlen(argv + i, al - i);

		if (!first)
			put(o, ",", 1);
		put_json_str(o, argv + i, n, SW_CUT_NONE);
		first = 0;
		i += n + 1;
	}
	puts_(o, "]");
	if (ev->flags & (SW_F_ARGV_TRUNC | SW_F_PATH_TRUNC)) {
		puts_(o, ",\"truncated\":true,\"truncated_fields\":[");
		if (ev->flags & SW_F_PATH_TRUNC)
			puts_(o, ev->flags & SW_F_ARGV_TRUNC ? "\"filename\"," : "\"filename\"");
		if (ev->flags & SW_F_ARGV_TRUNC)
			puts_(o, "\"argv\"");
		puts_(o, "]");
	}
	puts_(o, "}\n");
}

/* Is this record shown at all (-e / the profile's record types, --failed)? */
static int record_shown(const struct sw_event_hdr *h)
{
	if (h->type >= SW_EV_TYPES || !(sw_opts.show_types & (1u << h->type)))
		return 0;
	if (h->type == SW_EV_SYSCALL) {
		const struct sw_syscall_event *ev = (const void *)h;

		if (ev->nr >= SW_MAX_SYSCALLS || (sw_sc[ev->nr].flags & SW_FMT_HIDDEN))
			return 0;
		return !sw_opts.failed_only || is_err(ev->ret);
	}
	return !sw_opts.failed_only;
}

enum { SU_NO, SU_LIB, SU_LOCALE, SU_OTHER };

/* What a path is to a new image's start-up: a shared library, a locale/gconv file, another
 * file of the dynamic loader (/etc/ld.so.cache, /etc/ld.so.preload), or none of these. */
static int startup_kind(const char *path, size_t n)
{
	char p[SW_PATH_MAX + 1];
	size_t len = strnlen(path, n < SW_PATH_MAX ? n : SW_PATH_MAX);
	const char *base, *so;

	memcpy(p, path, len);
	p[len] = 0;
	if (len == 0 || p[0] != '/')
		return SU_NO;
	if (strncmp(p, "/etc/ld.so.", 11) == 0)
		return SU_OTHER;
	if (strncmp(p, "/usr/lib/locale/", 16) == 0 || strcmp(p, "/usr/lib/locale") == 0 ||
	    strncmp(p, "/usr/share/locale/", 18) == 0 || strcmp(p, "/etc/locale.alias") == 0 ||
	    strstr(p, "/gconv/"))
		return SU_LOCALE;
	base = strrchr(p, '/') + 1;
	for (so = strstr(base, ".so"); so; so = strstr(so + 1, ".so"))
		if (so[3] == 0 || so[3] == '.')
			return SU_LIB;
	return SU_NO;
}

static struct sw_held *held_of(uint32_t pid)
{
	for (int i = 0; i < SW_HELD; i++)
		if (sw_held[i].pid == pid)
			return &sw_held[i];
	return NULL;
}

static void release(struct sw_out *o, struct sw_held *held, int color)
{
	human_prefix(o, &held->ev.hdr, color);
	human_exec(o, &held->ev, color, held);
	put(o, "\n", 1);
	held->pid = 0;
}

/* Hold an EXEC record for start-up folding (the oldest held line goes out if all are taken). */
static void hold(struct sw_out *o, const struct sw_exec_event *ev, int color)
{
	struct sw_held *slot = held_of(ev->hdr.pid);
	size_t size = ev->hdr.size < sizeof(slot->ev) ? ev->hdr.size : sizeof(slot->ev);

	if (slot) {
		release(o, slot, color); /* exec'd again before doing anything else */
	} else {
		slot = held_of(0);
		if (!slot) {
			slot = &sw_held[0];
			for (int i = 1; i < SW_HELD; i++)
				if (sw_held[i].ev.hdr.ktime_ns < slot->ev.hdr.ktime_ns)
					slot = &sw_held[i];
			release(o, slot, color);
		}
	}
	memset(slot, 0, offsetof(struct sw_held, ev));
	memcpy(&slot->ev, ev, size);
	slot->pid = ev->hdr.pid;
}

/* A record of a process whose EXEC line is held: fold it if it is start-up work
 * (returns 1), else write the held line out first (returns 0). */
static int fold(struct sw_out *o, struct sw_held *held, const struct sw_event_hdr *h, int color)
{
	if (h->type == SW_EV_SYSCALL) {
		const struct sw_syscall_event *ev = (const void *)h;
		int verb = sw_sc[ev->nr < SW_MAX_SYSCALLS ? ev->nr : 0].verb;
		struct sw_sc_view v;
		int kind = SU_NO;

		view_syscall(ev, &v);
		if (verb == SW_VERB_OPEN && v.path)
			kind = startup_kind(v.path, ev->path_len);
		else if (v.fdname)
			kind = startup_kind(v.fdname, ev->fdname_len);
		else if (v.path)
			kind = startup_kind(v.path, ev->path_len);
		if (kind != SU_NO) {
			if (verb == SW_VERB_OPEN && !is_err(ev->ret)) {
				held->libs += kind == SU_LIB;
				held->locale += kind == SU_LOCALE;
			}
			held->folded++;
			return 1;
		}
	}
	release(o, held, color);
	return 0;
}

size_t sw_format(const char *recs, size_t len, size_t *pos, int mode, int color, char *out,
		 size_t cap)
{
	struct sw_out o = {out, out + cap};

	/* room for two lines: a held EXEC line may go out before the record's own */
	while (*pos + sizeof(struct sw_event_hdr) <= len &&
	       (size_t)(o.end - o.p) >= 2 * SW_MAX_LINE) {
		const struct sw_event_hdr *h = (const void *)(recs + *pos);
		size_t size = h->size;

		if (size < sizeof(*h) || *pos + size > len)
			break;
		*pos += (size + 7) & ~(size_t)7;
		if (!record_shown(h))
			continue;
		if (mode == SW_OUT_JSON) {
			switch (h->type) {
			case SW_EV_SYSCALL:
				json_syscall(&o, (const void *)h);
				break;
			case SW_EV_EXEC:
				json_exec(&o, (const void *)h);
				break;
			case SW_EV_FORK:
				json_hdr(&o, h, "fork");
				puts_(&o, ",\"child_pid\":");
				put_u64(&o, ((const struct sw_fork_event *)h)->child_pid);
				puts_(&o, "}\n");
				break;
			case SW_EV_EXIT: {
				const struct sw_exit_event *e = (const void *)h;

				json_hdr(&o, h, "exit");
				puts_(&o, ",\"exit_code\":");
				put_i64(&o, e->exit_code);
				if (e->signal) {
					puts_(&o, ",\"signal\":\"");
					puts_(&o, sig_name(e->signal));
					puts_(&o, "\"");
				}
				puts_(&o, "}\n");
				break;
			}
			}
			continue;
		}
		if (sw_opts.fold_startup) {
			struct sw_held *held = held_of(h->pid);

			if (held && fold(&o, held, h, color))
				continue;
			if (h->type == SW_EV_EXEC) {
				hold(&o, (const void *)h, color);
				continue;
			}
		}
		human_prefix(&o, h, color);
		switch (h->type) {
		case SW_EV_SYSCALL: {
			const struct sw_syscall_event *ev = (const void *)h;

			human_syscall(&o, ev, color);
			if (sw_opts.show_duration) /* -T, as strace: <seconds> */
				putf(&o, " <%llu.%06llu>",
				     (unsigned long long)(ev->duration_ns / 1000000000ULL),
				     (unsigned long long)((ev->duration_ns / 1000) % 1000000));
			break;
		}
		case SW_EV_EXEC:
			human_exec(&o, (const void *)h, color, NULL);
			break;
		case SW_EV_FORK:
			human_verb(&o, "FORK", color, C_BLUE);
			putf(&o, "parent=%u child=%u", h->pid, ((const struct sw_fork_event *)h)->child_pid);
			break;
		case SW_EV_EXIT: {
			const struct sw_exit_event *e = (const void *)h;

			human_verb(&o, "EXIT", color, C_BLUE);
			if (e->signal)
				putf(&o, "killed by %s", sig_name(e->signal));
			else
				putf(&o, "code %d", e->exit_code);
			break;
		}
		}
		put(&o, "\n", 1);
	}
	return o.p - out;
}

size_t sw_fmt_release_held(uint64_t now_ns, uint64_t max_age_ns, int color, char *out,
			   size_t cap)
{
	struct sw_out o = {out, out + cap};

	for (int i = 0; i < SW_HELD && (size_t)(o.end - o.p) >= SW_MAX_LINE; i++) {
		struct sw_held *held = &sw_held[i];

		if (held->pid && (!max_age_ns || now_ns - held->ev.hdr.ktime_ns >= max_age_ns ||
				  now_ns < held->ev.hdr.ktime_ns))
			release(&o, held, color);
	}
	return o.p - out;
}

/* -------------------------------------------------------------- libbpf log */

static char sw_log_buf[8192];
static int sw_log_verbose;

static int sw_log_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[1024];
	size_t have, n;

	vsnprintf(line, sizeof(line), fmt, ap);
	if (sw_log_verbose)
		fputs(line, stderr);
	if (level == LIBBPF_DEBUG)
		return 0;
	have = strlen(sw_log_buf);
	n = strlen(line);
	if (have + n + 1 > sizeof(sw_log_buf)) {
		/* keep the newest messages */
		memmove(sw_log_buf, sw_log_buf + have / 2, have - have / 2 + 1);
		have = strlen(sw_log_buf);
	}
	if (have + n + 1 <= sizeof(sw_log_buf))
		memcpy(sw_log_buf + have, line, n + 1);
	return 0;
}

void sw_log_install(int verbose)
{
	sw_log_verbose = verbose;
	libbpf_set_print(sw_log_print);
}

const char *sw_log_last(void) { return sw_log_buf; }
void sw_log_clear(void) { sw_log_buf[0] = 0; }
