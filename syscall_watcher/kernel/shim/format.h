/* Inside the formatter: what its files (tables.c, text.c, human.c, json.c, format.c) share.
 * Not part of the binding's API (that is ../_shim.h); nothing here is seen by cffi.
 *
 * The output formats are defined here and in those files only: every record of every ring
 * (the tracer's events, the enforcer's denials) starts with struct sw_event_hdr, and both
 * writers render that header one way — json_hdr() / human_prefix() — so every producer's
 * lines carry the same header fields with the same names and units. The JSON Schema of every
 * record is syscall_watcher/data/schema/records.schema.json; tests/test_schema.py holds the
 * two to each other. */
#ifndef SWATCH_SHIM_FORMAT_H
#define SWATCH_SHIM_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "watcher.h"
#include "policy.h"
#include "_shim.h"

/* ------------------------------------------------------------------ tables.c */

struct sw_sc_fmt {
	char name[32];
	uint8_t verb;
	uint8_t flags;
};

extern struct sw_sc_fmt sw_sc[SW_MAX_SYSCALLS];
extern struct sw_sc_fmt sw_uring[SW_URING_OPS]; /* io_uring opcodes: "OPENAT", verb, flags */
extern char sw_errname[4096][16];
extern int64_t sw_clock_offset;
extern int sw_utc_offset;
extern struct sw_fmt_opts sw_opts;
extern uint64_t sw_last_ktime; /* -r: the previous human line's time */
extern const char *const sw_verb_name[SW_VERBS];
extern const char *const sw_fd_kind[9];
extern const char *const sw_fd_label[9];

/* The label of a cgroup (a container's "<short id> (<name>)"), or NULL. */
const char *sw_cgroup_label(uint64_t id);
/* The Kubernetes names of a labelled cgroup's container (container may be ""). */
struct sw_kubernetes {
	char *namespace_;
	char *pod;
	char *container;
};
/* The Kubernetes names of a cgroup, or NULL when its container is not in a pod. */
const struct sw_kubernetes *sw_cgroup_kubernetes(uint64_t id);
/* sw_fmt_set_name()'s tables: the name of id in table, or NULL if none was set. */
const char *sw_name(int table, unsigned id);
/* The loaded policy's name and its path rules (for denial records). */
const char *sw_policy_name(void);
const char *sw_policy_rule(unsigned i);

/* -------------------------------------------------------------------- text.c */

struct sw_out {
	char *p;
	char *end;
};

/* Where a string lost bytes, so the "..." mark goes where the cut is. */
#define SW_CUT_NONE 0
#define SW_CUT_END 1  /* read head-first (a user string): the tail is missing, "/head..." */
#define SW_CUT_HEAD 2 /* walked leaf-first (a dentry path): the head is missing, ".../tail" */

/* Inline: most calls append a string literal, whose strlen and memcpy the compiler then
 * folds into a few stores (the JSON writer makes ~40 of these calls per record). */
static inline void sw_put(struct sw_out *o, const char *s, size_t n)
{
	if ((size_t)(o->end - o->p) < n)
		n = o->end - o->p;
	memcpy(o->p, s, n);
	o->p += n;
}

static inline void sw_puts(struct sw_out *o, const char *s) { sw_put(o, s, strlen(s)); }

void sw_putf(struct sw_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sw_put_u64(struct sw_out *o, uint64_t v);
void sw_put_i64(struct sw_out *o, int64_t v);
int sw_utf8_len(const unsigned char *s, size_t n, uint32_t *cp);
int sw_unsafe_cp(uint32_t cp);
void sw_put_json_str(struct sw_out *o, const char *s, size_t n, int cut);
void sw_put_human_text(struct sw_out *o, const char *s, size_t n, int quoted);
void sw_put_human_str(struct sw_out *o, const char *s, size_t n, int cut);
void sw_put_shell_word(struct sw_out *o, const char *s, size_t n, int cut);
/* An argument with its secrets redacted into out (cap >= n + 64): its length, or (size_t)-1
 * when it holds none (print s). prev: the argument before it (NULL for the first). */
size_t sw_redact_arg(const char *prev, size_t pn, const char *s, size_t n, int end_cut,
		     char *out, size_t cap);
/* Write argument s (redacted) with put (sw_put_shell_word / sw_put_json_str). */
void sw_put_arg(struct sw_out *o, const char *prev, size_t pn, const char *s, size_t n,
		int end_cut, void (*put)(struct sw_out *, const char *, size_t, int));
void sw_put_errno(struct sw_out *o, int64_t ret);
int sw_is_err(int64_t ret);
const char *sw_fmt_sockaddr(const uint8_t *a, size_t len, char *dst, size_t cap);
const char *sw_sig_name(int sig);

/* ------------------------------------------------------------------ format.c */

/* A syscall record's variable part, located. */
struct sw_sc_view {
	const struct sw_syscall_event *ev;
	const char *path, *path2, *fdname;
	const uint8_t *addr;
	char addrbuf[160];
	const char *family;
};

void sw_view_syscall(const struct sw_syscall_event *ev, struct sw_sc_view *v);
int sw_path_cut(const struct sw_syscall_event *ev, int flag);
int sw_fdname_cut(const struct sw_syscall_event *ev);

/* A denial's target as text (a path, an address, "pid N signal S", "AF_INET SOCK_STREAM"),
 * and where it was cut. */
struct sw_denial_view {
	const struct swp_denial *d;
	const char *target;
	size_t target_len;
	int cut;
	char buf[160];
	const char *rule;
	char rule_buf[24];
	const char *syscall;    /* NULL: not the reactive tier */
	char syscall_buf[48];
};

void sw_view_denial(const struct swp_denial *d, struct sw_denial_view *v);

/* Start-up folding (format.c): what a held EXEC line says it folded. */
struct sw_held {
	uint32_t pid;           /* 0: free */
	uint32_t libs;          /* shared libraries opened */
	uint32_t locale;        /* locale and gconv files opened */
	uint32_t folded;        /* every start-up record folded into the line */
	struct sw_exec_event ev;
};

/* ------------------------------------------------------------------- human.c */

void sw_fmt_forget_held(void);

void sw_human_record(struct sw_out *o, const struct sw_event_hdr *h, int color,
		     const struct sw_held *fold);

/* ------------------------------------------------------------------- steps.c */

/* --agent: the step of a process (0: none), and the per-record hooks around formatting. */
uint32_t sw_step_of(uint32_t pid);
void sw_step_before(const struct sw_event_hdr *h);
void sw_step_after(const struct sw_event_hdr *h);

/* -------------------------------------------------------------------- json.c */

void sw_json_record(struct sw_out *o, const struct sw_event_hdr *h);

#endif /* SWATCH_SHIM_FORMAT_H */
