/* Human lines: `TIME PID COMM [container] VERB details`, the same prefix for every record of
 * every ring (trace events and denials), coloured on request, every field escaped (text.c).
 * A little over 400 lines: every record type's human line, kept in one file so the prefix and
 * the verb column stay one definition. */
#include <stdio.h>
#include <string.h>

#include "format.h"

#define C_RESET "\033[0m"
#define C_DIM "\033[2m"
#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_YELLOW "\033[33m"
#define C_BLUE "\033[34m"
#define C_MAGENTA "\033[35m"
#define C_CYAN "\033[36m"
#define C_BOLD_RED "\033[1;31m"

static const char *sw_verb_color(int verb)
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
static void sw_put_time(struct sw_out *o, uint64_t ktime, int64_t local_ns, int s, int ms)
{
	int64_t real = (int64_t)ktime + sw_clock_offset;
	int us = (int)((local_ns / 1000) % 1000000);

	switch (sw_opts.ts_style) {
	case SW_TS_SEC:
		sw_putf(o, "%02d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
		break;
	case SW_TS_US:
		sw_putf(o, "%02d:%02d:%02d.%06d", s / 3600, (s / 60) % 60, s % 60, us);
		break;
	case SW_TS_EPOCH:
		sw_putf(o, "%lld.%06d", (long long)(real / 1000000000LL), (int)((real / 1000) % 1000000));
		break;
	case SW_TS_REL: {
		uint64_t d = sw_last_ktime && ktime > sw_last_ktime ? ktime - sw_last_ktime : 0;

		sw_putf(o, "%6llu.%06u", (unsigned long long)(d / 1000000000ULL),
		     (unsigned)((d / 1000) % 1000000));
		if (ktime > sw_last_ktime)
			sw_last_ktime = ktime;
		break;
	}
	default:
		sw_putf(o, "%02d:%02d:%02d.%03d", s / 3600, (s / 60) % 60, s % 60, ms);
	}
}

static void sw_human_prefix(struct sw_out *o, const struct sw_event_hdr *h, int color)
{
	int64_t ns = (int64_t)h->ktime_ns + sw_clock_offset + (int64_t)sw_utc_offset * 1000000000LL;
	int64_t secs = ns / 1000000000LL;
	int ms = (int)((ns / 1000000LL) % 1000);
	int s = (int)(secs % 86400);
	const char *label = sw_cgroup_label(h->cgroup_id);

	char *comm_at;

	if (color)
		sw_puts(o, C_DIM);
	sw_put_time(o, h->ktime_ns, ns, s, ms);
	sw_putf(o, " %-7u ", h->pid);
	comm_at = o->p;
	sw_put_human_text(o, h->comm, sizeof(h->comm), 0);
	for (long w = o->p - comm_at; w < 15; w++)
		sw_put(o, " ", 1);
	sw_put(o, " ", 1);
	if (label) {
		const struct sw_kubernetes *k8s = sw_cgroup_kubernetes(h->cgroup_id);

		sw_put(o, "[", 1);
		sw_put_human_text(o, label, strlen(label), 0);
		if (k8s) {
			sw_puts(o, " pod=");
			sw_put_human_text(o, k8s->namespace_, strlen(k8s->namespace_), 0);
			sw_put(o, "/", 1);
			sw_put_human_text(o, k8s->pod, strlen(k8s->pod), 0);
			if (k8s->container[0]) {
				sw_puts(o, " container=");
				sw_put_human_text(o, k8s->container, strlen(k8s->container), 0);
			}
		}
		sw_put(o, "] ", 2);
	}
	if (color)
		sw_puts(o, C_RESET);
}

static void sw_human_verb(struct sw_out *o, const char *verb, int colorful, const char *col)
{
	if (colorful && col[0])
		sw_putf(o, "%s%-7s%s ", col, verb, C_RESET);
	else
		sw_putf(o, "%-7s ", verb);
}


/* A socket address for a human line (a unix path is any bytes: escaped). */
static void sw_put_addr(struct sw_out *o, const struct sw_sc_view *v)
{
	sw_put_human_text(o, v->addrbuf, strlen(v->addrbuf), 0);
}

/* The name of the fd argument as a human line shows it. */
static void sw_put_fd_name(struct sw_out *o, const struct sw_sc_view *v)
{
	const struct sw_syscall_event *ev = v->ev;

	if (ev->hdr.type == SW_EV_URING && (ev->flags & SW_F_URING_FIXED))
		sw_putf(o, "fixed file %d", (int)ev->args[0]);
	else if (v->fdname)
		sw_put_human_str(o, v->fdname, ev->fdname_len, sw_fdname_cut(ev));
	else if (ev->fd_kind < sizeof(sw_fd_label) / sizeof(sw_fd_label[0]) && sw_fd_label[ev->fd_kind][0])
		sw_putf(o, "\"%s\"", sw_fd_label[ev->fd_kind]);
	else
		sw_putf(o, "fd %d", (int)ev->args[0]);
}

static void sw_human_result(struct sw_out *o, int64_t ret, int color)
{
	if (sw_is_err(ret)) {
		if (color)
			sw_puts(o, C_RED);
		sw_put_errno(o, ret);
		if (color)
			sw_puts(o, C_RESET);
	} else {
		sw_put_i64(o, ret);
	}
}

/* A syscall's line, or an io_uring operation's (uring: `URING OPENAT` then the same details as
 * the syscall's; f is the opcode's entry, args[0] the sqe's fd). */
static void sw_human_syscall(struct sw_out *o, const struct sw_syscall_event *ev, int color,
			     int uring)
{
	const struct sw_sc_fmt *f = uring ? &sw_uring[ev->nr < SW_URING_OPS ? ev->nr : 0]
					  : &sw_sc[ev->nr < SW_MAX_SYSCALLS ? ev->nr : 0];
	struct sw_sc_view v;
	int64_t ret = ev->ret;
	int err = sw_is_err(ret);
	int verb = f->verb;
	const char *vname = sw_verb_name[verb];

	sw_view_syscall(ev, &v);
	if (verb == SW_VERB_READ && !err && ret == 0)
		vname = "READ";
	if (uring) {
		sw_human_verb(o, "URING", color, err ? C_RED : sw_verb_color(verb));
		sw_puts(o, f->name[0] ? f->name : "?");
		sw_puts(o, " ");
		if (verb == SW_VERB_GENERIC) {
			if (v.fdname || ev->fd_kind != SW_FD_NONE) {
				sw_puts(o, "on ");
				sw_put_fd_name(o, &v);
				sw_puts(o, " ");
			}
			sw_puts(o, "-> ");
			sw_human_result(o, ret, color);
			return;
		}
	} else {
		sw_human_verb(o, vname, color, err ? C_RED : sw_verb_color(verb));
	}

	switch (verb) {
	case SW_VERB_OPEN:
		sw_put_human_str(o, v.path ? v.path : "", ev->path_len, sw_path_cut(ev, SW_F_PATH_TRUNC));
		sw_puts(o, " -> ");
		if (err)
			sw_human_result(o, ret, color);
		else
			sw_putf(o, "fd %lld", (long long)ret);
		break;
	case SW_VERB_READ:
	case SW_VERB_WRITE:
		if (err) {
			sw_puts(o, verb == SW_VERB_READ ? "from " : "to ");
			sw_put_fd_name(o, &v);
			sw_puts(o, " -> ");
			sw_human_result(o, ret, color);
		} else if (verb == SW_VERB_READ && ret == 0 && (f->flags & SW_FMT_BYTES)) {
			sw_puts(o, "EOF on ");
			sw_put_fd_name(o, &v);
		} else if (v.path && !v.fdname && ev->fd_kind == SW_FD_NONE) {
			sw_put_human_str(o, v.path, ev->path_len, sw_path_cut(ev, SW_F_PATH_TRUNC));
			sw_putf(o, " = %lld", (long long)ret);
		} else {
			sw_putf(o, "%lld %s ", (long long)ret,
			     (f->flags & SW_FMT_BYTES) ? (ret == 1 ? "byte" : "bytes") : "entries");
			sw_puts(o, verb == SW_VERB_READ ? "from " : "to ");
			sw_put_fd_name(o, &v);
			if (v.family) {
				sw_puts(o, " (");
				sw_put_addr(o, &v);
				sw_puts(o, ")");
			}
		}
		break;
	case SW_VERB_CLOSE:
		sw_put_fd_name(o, &v);
		if (err) {
			sw_puts(o, " -> ");
			sw_human_result(o, ret, color);
		}
		break;
	case SW_VERB_SOCKET:
		sw_puts(o, "-> ");
		if (err)
			sw_human_result(o, ret, color);
		else
			sw_putf(o, "fd %lld", (long long)ret);
		break;
	case SW_VERB_CONNECT:
	case SW_VERB_BIND:
		sw_putf(o, "fd %d -> ", (int)ev->args[0]);
		if (v.family)
			sw_put_addr(o, &v);
		else
			sw_puts(o, "?");
		sw_puts(o, " ");
		if (err)
			sw_human_result(o, ret, color);
		else
			sw_puts(o, color ? C_GREEN "OK" C_RESET : "OK");
		break;
	case SW_VERB_LISTEN:
		sw_putf(o, "fd %d", (int)ev->args[0]);
		if (err) {
			sw_puts(o, " -> ");
			sw_human_result(o, ret, color);
		}
		break;
	case SW_VERB_ACCEPT:
		sw_putf(o, "fd %d -> ", (int)ev->args[0]);
		if (err) {
			sw_human_result(o, ret, color);
		} else {
			sw_putf(o, "fd %lld", (long long)ret);
			if (v.family) {
				sw_puts(o, " from ");
				sw_put_addr(o, &v);
			}
		}
		break;
	case SW_VERB_SPAWN: {
		uint64_t flags = ev->aux ? ev->aux : ev->args[0];
		int thread = (ev->aux || strcmp(f->name, "clone") == 0) && (flags & 0x00010000);

		if (err)
			sw_human_result(o, ret, color);
		else
			sw_putf(o, "%s %lld", thread ? "thread tid" : "child pid", (long long)ret);
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
			sw_put_human_str(o, v.path, ev->path_len, sw_path_cut(ev, SW_F_PATH_TRUNC));
		else
			sw_put_fd_name(o, &v);
		if (err) {
			sw_puts(o, " -> ");
			sw_human_result(o, ret, color);
		}
		if (verb == SW_VERB_EXEC && sw_opts.exec_view)
			sw_putf(o, " (ppid %u)", ev->hdr.ppid);
		break;
	case SW_VERB_RENAME:
	case SW_VERB_LINK:
		sw_put_human_str(o, v.path ? v.path : "", ev->path_len, sw_path_cut(ev, SW_F_PATH_TRUNC));
		sw_puts(o, " -> ");
		sw_put_human_str(o, v.path2 ? v.path2 : "", ev->path2_len, sw_path_cut(ev, SW_F_PATH2_TRUNC));
		if (err) {
			sw_puts(o, " -> ");
			sw_human_result(o, ret, color);
		}
		break;
	case SW_VERB_KILL:
		sw_putf(o, "pid %lld %s", (long long)(int)ev->args[0],
		     sw_sig_name((int)ev->args[ev->nr < SW_MAX_SYSCALLS && strcmp(f->name, "tgkill") == 0 ? 2 : 1]));
		if (err) {
			sw_puts(o, " -> ");
			sw_human_result(o, ret, color);
		}
		break;
	case SW_VERB_DUP:
		sw_put_fd_name(o, &v);
		sw_puts(o, " -> ");
		if (err)
			sw_human_result(o, ret, color);
		else
			sw_putf(o, "fd %lld", (long long)ret);
		break;
	default:
		sw_putf(o, "%s(", f->name[0] ? f->name : "?");
		for (int i = 0; i < 3; i++)
			sw_putf(o, i ? ", 0x%llx" : "0x%llx", (unsigned long long)ev->args[i]);
		sw_puts(o, ") = ");
		sw_human_result(o, ret, color);
		if (v.fdname) {
			sw_puts(o, " on ");
			sw_put_fd_name(o, &v);
		}
		break;
	}
}

static void sw_human_exec(struct sw_out *o, const struct sw_exec_event *ev, int color,
		       const struct sw_held *fold)
{
	size_t fl = ev->filename_len, al = ev->argv_len;
	const char *argv = (const char *)ev->data + fl, *prev = NULL;
	size_t pn = 0;
	size_t i = 0;
	int idx = 0;

	sw_human_verb(o, "EXEC", color, C_GREEN);
	/* bprm->filename is read head-first: a cut loses its end. */
	sw_put_shell_word(o, (const char *)ev->data, fl ? strnlen((const char *)ev->data, fl) : 0,
		       ev->flags & SW_F_PATH_TRUNC ? SW_CUT_END : SW_CUT_NONE);
	/* argv[0] is usually the program name again: show argv[1..]. */
	while (i < al) {
		size_t n = strnlen(argv + i, al - i);

		if (idx > 0) {
			sw_put(o, " ", 1);
			sw_put_arg(o, prev, pn, argv + i, n,
				   (ev->flags & SW_F_ARGV_TRUNC) && i + n >= al, sw_put_shell_word);
		}
		prev = argv + i;
		pn = n;
		i += n + 1;
		idx++;
	}
	if (ev->flags & SW_F_ARGV_TRUNC)
		sw_puts(o, " ...");
	if (sw_opts.exec_view)
		sw_putf(o, " -> 0 (ppid %u)", ev->hdr.ppid);
	if (fold && fold->folded) {
		sw_puts(o, " (ld.so: ");
		if (fold->libs)
			sw_putf(o, "%u %s", fold->libs, fold->libs == 1 ? "lib" : "libs");
		if (fold->libs && fold->locale)
			sw_puts(o, ", ");
		if (fold->locale)
			sw_putf(o, "%u locale %s", fold->locale, fold->locale == 1 ? "file" : "files");
		sw_putf(o, "%s%u start-up %s folded)", fold->libs || fold->locale ? "; " : "",
		     fold->folded, fold->folded == 1 ? "event" : "events");
	}
	if (sw_opts.ancestry) {
		int n = ev->ancestry_len < SW_ANCESTRY_MAX ? ev->ancestry_len : SW_ANCESTRY_MAX;

		sw_puts(o, "  [");
		for (int k = n - 1; k >= 0; k--) {
			sw_put_human_text(o, ev->ancestry[k].comm, sizeof(ev->ancestry[k].comm), 0);
			sw_putf(o, "(%u) \xe2\x86\x92 ", ev->ancestry[k].pid);
		}
		sw_put_human_text(o, ev->hdr.comm, sizeof(ev->hdr.comm), 0);
		sw_putf(o, "(%u)]", ev->hdr.pid);
	}
}

/* A denial: `DENIED  op target (policy)`, `... — killed after (SIGKILL at execve)` for the
 * reactive tier, `AUDIT   op target (policy P: would be denied, --audit-only)`. */
static void sw_human_denial(struct sw_out *o, const struct swp_denial *d, int color)
{
	struct sw_denial_view v;
	const char *op = sw_name(SW_NAMES_OP, d->op);
	const char *policy = sw_policy_name();

	sw_view_denial(d, &v);
	sw_human_verb(o, d->action == SWP_ACT_AUDIT ? "AUDIT" : "DENIED", color, C_BOLD_RED);
	if (op)
		sw_puts(o, op);
	else
		sw_putf(o, "op%u", d->op);
	if (v.target_len) {
		sw_put(o, " ", 1);
		if (v.cut == SW_CUT_HEAD)
			sw_put(o, "...", 3);
		sw_put_human_text(o, v.target, v.target_len, 0);
	}
	if (d->action == SWP_ACT_AUDIT) {
		sw_puts(o, " (policy ");
		sw_put_human_text(o, policy, strlen(policy), 0);
		sw_puts(o, ": would be denied, --audit-only)");
	} else {
		sw_puts(o, " (");
		sw_put_human_text(o, policy, strlen(policy), 0);
		sw_puts(o, ")");
		if (d->action == SWP_ACT_KILLED)
			sw_putf(o, " \xe2\x80\x94 killed after (SIGKILL at %s)",
				v.syscall ? v.syscall : "None");
	}
}

void sw_human_record(struct sw_out *o, const struct sw_event_hdr *h, int color,
		     const struct sw_held *fold)
{
	sw_human_prefix(o, h, color);
	switch (h->type) {
	case SW_EV_SYSCALL: {
		const struct sw_syscall_event *ev = (const void *)h;

		sw_human_syscall(o, ev, color, 0);
		if (sw_opts.show_duration) /* -T, as strace: <seconds> */
			sw_putf(o, " <%llu.%06llu>",
				(unsigned long long)(ev->duration_ns / 1000000000ULL),
				(unsigned long long)((ev->duration_ns / 1000) % 1000000));
		break;
	}
	case SW_EV_URING: {
		const struct sw_syscall_event *ev = (const void *)h;

		sw_human_syscall(o, ev, color, 1);
		if (ev->flags & SW_F_URING_SQPOLL)
			sw_puts(o, " (SQPOLL)");
		if (sw_opts.show_duration) /* submission to completion */
			sw_putf(o, " <%llu.%06llu>",
				(unsigned long long)(ev->duration_ns / 1000000000ULL),
				(unsigned long long)((ev->duration_ns / 1000) % 1000000));
		break;
	}
	case SW_EV_EXEC:
		sw_human_exec(o, (const void *)h, color, fold);
		break;
	case SW_EV_FORK:
		sw_human_verb(o, "FORK", color, C_BLUE);
		sw_putf(o, "parent=%u child=%u", h->pid,
			((const struct sw_fork_event *)h)->child_pid);
		break;
	case SW_EV_EXIT: {
		const struct sw_exit_event *e = (const void *)h;

		sw_human_verb(o, "EXIT", color, C_BLUE);
		if (e->signal)
			sw_putf(o, "killed by %s", sw_sig_name(e->signal));
		else
			sw_putf(o, "code %d", e->exit_code);
		break;
	}
	case SWP_EV_DENIAL:
		sw_human_denial(o, (const void *)h, color);
		break;
	}
	sw_put(o, "\n", 1);
}
