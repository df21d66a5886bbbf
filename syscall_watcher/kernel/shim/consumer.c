/* The ring-buffer consumer: copies records out of a BPF ring buffer in batches, so Python
 * sees one batch per poll, not one callback per record (architecture.md, decision 4). Any
 * ring whose records start with struct sw_event_hdr: the tracer's and the enforcer's.
 * Also libbpf's log, kept so errors can quote it. The formatter is format.c and its peers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <bpf/libbpf.h>

#include "watcher.h"
#include "policy.h"
#include "tls.h"
#include "_shim.h"

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
	int woken;              /* the last poll was woken by the kernel (not its timeout) */
	uint64_t delivered[SW_REC_TYPES];  /* per record type: SW_EV_*, SWP_EV_DENIAL */
};

#define SW_MAX2(a, b) ((a) > (b) ? (a) : (b))
/* The largest record of any ring: the tracer's syscall and exec events, a denial, a chunk
 * of TLS plaintext. */
static const size_t sw_max_record = SW_MAX2(SW_MAX2(SW_MAX2(sizeof(struct sw_syscall_event),
							    sizeof(struct sw_exec_event)),
						    sizeof(struct swp_denial)),
					    sizeof(struct sw_tls_event));

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
	if (h->type < SW_REC_TYPES)
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

/* Wait up to timeout_ms for a wakeup, then take what is queued either way: the kernel wakes
 * the consumer only every wakeup_bytes sent and after a quiet spell (watcher.bpf.c output()),
 * and epoll never reports the records sent in between, so a timeout is when the tail of a
 * burst is read (that bounds its latency). While the last batch stopped full there is no wait
 * at all. */
int sw_consumer_poll(struct sw_consumer *c, int timeout_ms)
{
	int err;

	c->len = 0;
	c->records = 0;
	c->woken = 0;
	if (!c->more) {
		err = ring_buffer__poll(c->rb, timeout_ms);
		c->woken = err > 0 || err == SW_STOP_BATCH;
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

/* Wait up to timeout_ms for the kernel's wakeup without taking anything (the next poll or
 * drain takes it): a stream of several rings waits on one, then takes the others first and
 * this one last, so no record of this ring that precedes a taken record of another is left
 * behind for the next round (the merge by kernel time would write it late). */
int sw_consumer_wait(struct sw_consumer *c, int timeout_ms)
{
	struct epoll_event ev;
	int n;

	if (c->more)
		return 1;
	n = epoll_wait(ring_buffer__epoll_fd(c->rb), &ev, 1, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	return n;
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

int sw_consumer_woken(struct sw_consumer *c) { return c->woken; }
const char *sw_consumer_data(struct sw_consumer *c) { return c->buf; }
size_t sw_consumer_len(struct sw_consumer *c) { return c->len; }

uint64_t sw_consumer_delivered(struct sw_consumer *c, int type)
{
	return type >= 0 && type < SW_REC_TYPES ? c->delivered[type] : 0;
}

/* -------------------------------------------------------------- libbpf log */

static char sw_log_buf[8192];
static int sw_log_verbose;

static int sw_log_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[1024];
	size_t have, n;
	va_list whole;

	va_copy(whole, ap);
	if (sw_log_verbose) /* whole: a verifier log is one message, far longer than line */
		vfprintf(stderr, fmt, whole);
	va_end(whole);
	vsnprintf(line, sizeof(line), fmt, ap);
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
