/* The C side of the binding that is ours, not libbpf's (sources in shim/): a ring-buffer
 * consumer that copies records out in batches (shim/consumer.c), and a formatter that turns
 * a batch — the tracer's events or the enforcer's denials — into human lines or JSON lines
 * without a Python call per record (shim/format.c, human.c, json.c, text.c, tables.c). */
#ifndef SWATCH_SHIM_H
#define SWATCH_SHIM_H

/* SW_CDEF_BEGIN */
#define SW_VERB_GENERIC 0
#define SW_VERB_OPEN 1
#define SW_VERB_READ 2
#define SW_VERB_WRITE 3
#define SW_VERB_CLOSE 4
#define SW_VERB_SOCKET 5
#define SW_VERB_CONNECT 6
#define SW_VERB_BIND 7
#define SW_VERB_LISTEN 8
#define SW_VERB_ACCEPT 9
#define SW_VERB_SPAWN 10
#define SW_VERB_DELETE 11
#define SW_VERB_RENAME 12
#define SW_VERB_MKDIR 13
#define SW_VERB_RMDIR 14
#define SW_VERB_CHDIR 15
#define SW_VERB_STAT 16
#define SW_VERB_EXEC 17
#define SW_VERB_LINK 18
#define SW_VERB_KILL 19
#define SW_VERB_CHMOD 20
#define SW_VERB_DUP 21
#define SW_VERBS 22

/* sw_fmt_set_syscall() flags */
#define SW_FMT_RET_FD 1
#define SW_FMT_BYTES 2
#define SW_FMT_HIDDEN 4   /* not picked (-e / the profile): the formatter skips its records */

/* struct sw_fmt_opts.ts_style: strace's timestamp styles */
#define SW_TS_MS 0        /* HH:MM:SS.mmm (swatch's default) */
#define SW_TS_SEC 1       /* -t   HH:MM:SS */
#define SW_TS_US 2        /* -tt  HH:MM:SS.uuuuuu */
#define SW_TS_EPOCH 3     /* -ttt seconds since the epoch .uuuuuu */
#define SW_TS_REL 4       /* -r   seconds since the previous line */

/* How human and JSON lines are written (strace-style options). */
struct sw_fmt_opts {
	uint8_t ts_style;      /* SW_TS_* (human lines) */
	uint8_t show_duration; /* -T: append <seconds> to syscall lines */
	uint8_t failed_only;   /* --failed: only syscalls that returned an error */
	uint8_t ancestry;      /* --ancestry: the parent chain on EXEC lines */
	uint8_t exec_view;     /* execsnoop view: ppid and result on EXEC lines */
	uint8_t fold_startup;  /* fold a new image's ld.so/locale start-up into its EXEC line */
	uint8_t show_types;    /* bit 1 << SW_EV_*: record types shown */
	uint8_t pad;
	uint32_t strsize;      /* -s: show at most this many bytes of a string (0 = all) */
	uint32_t fold_ms;      /* a held EXEC line is written after this long at the latest */
};

/* Record types a consumer counts (struct sw_event_hdr.type below this: SW_EV_*,
 * SWP_EV_DENIAL). */
#define SW_REC_TYPES 32

/* sw_fmt_set_name() tables: the names a denial record is written with. */
#define SW_NAMES_OP 0         /* SWP_OP_* -> "exec", "connect", ... */
#define SW_NAMES_TIER 1       /* SWP_TIER_* -> "lsm", ... */
#define SW_NAMES_ACTION 2     /* SWP_ACT_* -> "blocked", "killed", "audit" */
#define SW_NAMES_FAMILY 3     /* AF_* -> "AF_INET", ... */
#define SW_NAMES_SOCKTYPE 4   /* SOCK_* -> "SOCK_STREAM", ... */
#define SW_NAME_TABLES 5

#define SW_OUT_HUMAN 0
#define SW_OUT_JSON 1

/* The largest line one record can format to: sw_format() stops early rather
 * than start a record with less room than this left. */
#define SW_MAX_LINE 16384

struct sw_consumer;

struct sw_consumer *sw_consumer_new(int ring_fd, size_t cap);
void sw_consumer_free(struct sw_consumer *c);
/* Wait up to timeout_ms for a wakeup, then copy out what is queued, woken or not (up to the
 * batch's capacity; no wait while records are left over). Returns the number of records in
 * the batch, or -errno. */
int sw_consumer_poll(struct sw_consumer *c, int timeout_ms);
/* Wait for a wakeup (>0), or the timeout (0), taking nothing; <0: -errno. */
int sw_consumer_wait(struct sw_consumer *c, int timeout_ms);
/* The same without waiting. */
int sw_consumer_drain(struct sw_consumer *c);
/* Did the last sw_consumer_poll() end on a wakeup (1) rather than its timeout (0)? */
int sw_consumer_woken(struct sw_consumer *c);
const char *sw_consumer_data(struct sw_consumer *c);
size_t sw_consumer_len(struct sw_consumer *c);
uint64_t sw_consumer_delivered(struct sw_consumer *c, int type);
/* The offset of the first record at or after pos that happened after ktime_ns (len if none):
 * where to stop formatting to put another stream's line of ktime_ns in time order. */
size_t sw_batch_until(const char *recs, size_t len, size_t pos, uint64_t ktime_ns);
/* How many '\n' in buf: the lines an output wrote (without copying it to count). */
size_t sw_count_lines(const char *buf, size_t len);

void sw_fmt_reset(void);
void sw_fmt_set_syscall(uint32_t nr, const char *name, uint8_t verb, uint8_t flags);
/* An io_uring opcode's name ("OPENAT"), verb and flags, for SW_EV_URING records. */
void sw_fmt_set_uring_op(uint32_t op, const char *name, uint8_t verb, uint8_t flags);
void sw_fmt_set_errno(int err, const char *name);
void sw_fmt_set_clock(int64_t realtime_minus_monotonic_ns, int utc_offset_s);
/* Label a cgroup's records (JSON "container", "[label]" in human lines). Any number of
 * labels; returns 0, or -ENOMEM / -EINVAL (cgroup id 0): the caller says so. */
int sw_fmt_set_cgroup_label(uint64_t cgroup_id, const char *label);
/* The Kubernetes pod a labelled cgroup's container belongs to (the runtime's io.kubernetes.*
 * labels): JSON "kubernetes", "pod=NS/POD container=NAME" in human lines. container may be "".
 * 0, or -ENOENT (no label set for the cgroup) / -ENOMEM. */
int sw_fmt_set_cgroup_kubernetes(uint64_t cgroup_id, const char *namespace_, const char *pod,
				 const char *container);
size_t sw_fmt_cgroup_labels(void);
/* Names for denial records (SW_NAMES_*, ids below 64, names below 24 bytes): 0 or -EINVAL. */
int sw_fmt_set_name(int table, unsigned id, const char *name);
/* The loaded policy's name and its path rules (a denial names the rule that matched). */
void sw_fmt_set_policy(const char *name);
int sw_fmt_set_policy_rule(unsigned i, const char *path);
void sw_fmt_set_options(const struct sw_fmt_opts *opts);
/* Write the EXEC lines held for start-up folding that are older than max_age_ns at
 * now_ns (CLOCK_MONOTONIC), all of them if max_age_ns is 0; returns the bytes written. */
size_t sw_fmt_release_held(uint64_t now_ns, uint64_t max_age_ns, int color, char *out,
			   size_t cap);
/* Format records [*pos, len) of a batch (of any ring: trace events and denials alike); appends to out (cap bytes), advances
 * *pos past the records formatted, returns the bytes written. */
size_t sw_format(const char *recs, size_t len, size_t *pos, int mode, int color, char *out,
		 size_t cap);

/* --agent: steps (shim/steps.c). Reset (on: 1 to tag records), open a step for an agent
 * process (step 0 closes it; -1 when SW_STEP_AGENTS agents have open steps), the step of a
 * process, the side buffer of step processes' action records (JSON lines; cleared by
 * sw_step_side_clear), and what could not be kept (which 0: action lines, 1: members). */
void sw_step_reset(int on);
int sw_step_open(uint32_t agent, uint32_t step);
uint32_t sw_step_of(uint32_t pid);
size_t sw_step_side(const char **data);
void sw_step_side_clear(void);
uint64_t sw_step_lost(int which);

/* libbpf's messages, kept so errors can quote them. */
void sw_log_install(int verbose);
const char *sw_log_last(void);
void sw_log_clear(void);
/* SW_CDEF_END */

#endif /* SWATCH_SHIM_H */
