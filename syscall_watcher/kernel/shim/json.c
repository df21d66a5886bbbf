/* JSON lines: one object per record, every record of every ring (trace events, denials)
 * opening with the same header (json_hdr). Field names and types are a contract: the JSON
 * Schema in syscall_watcher/data/schema/records.schema.json describes each record written
 * here, and tests/test_schema.py validates what real workloads produce against it. */
#include <string.h>

#include "format.h"

/* The header every record carries: type, time_ns (wall clock, ns since the epoch), pid, tid,
 * ppid, uid, cgroup_id, comm, and container when the cgroup is labelled (with kubernetes when
 * the container is in a pod). */
static void sw_json_hdr(struct sw_out *o, const struct sw_event_hdr *h, const char *type)
{
	const char *label = sw_cgroup_label(h->cgroup_id);
	uint32_t step;

	sw_puts(o, "{\"type\":\"");
	sw_puts(o, type);
	sw_puts(o, "\",\"time_ns\":");
	sw_put_i64(o, (int64_t)h->ktime_ns + sw_clock_offset);
	sw_puts(o, ",\"pid\":");
	sw_put_u64(o, h->pid);
	sw_puts(o, ",\"tid\":");
	sw_put_u64(o, h->tid);
	sw_puts(o, ",\"ppid\":");
	sw_put_u64(o, h->ppid);
	sw_puts(o, ",\"uid\":");
	sw_put_u64(o, h->uid);
	sw_puts(o, ",\"cgroup_id\":");
	sw_put_u64(o, h->cgroup_id);
	sw_puts(o, ",\"comm\":");
	sw_put_json_str(o, h->comm, sizeof(h->comm), SW_CUT_NONE);
	step = sw_step_of(h->pid);
	if (step) { /* --agent: the process belongs to a step (steps.c) */
		sw_puts(o, ",\"step\":");
		sw_put_u64(o, step);
	}
	if (label) {
		const struct sw_kubernetes *k8s = sw_cgroup_kubernetes(h->cgroup_id);

		sw_puts(o, ",\"container\":");
		sw_put_json_str(o, label, strlen(label), SW_CUT_NONE);
		if (k8s) {
			sw_puts(o, ",\"kubernetes\":{\"namespace\":");
			sw_put_json_str(o, k8s->namespace_, strlen(k8s->namespace_), SW_CUT_NONE);
			sw_puts(o, ",\"pod\":");
			sw_put_json_str(o, k8s->pod, strlen(k8s->pod), SW_CUT_NONE);
			if (k8s->container[0]) {
				sw_puts(o, ",\"container\":");
				sw_put_json_str(o, k8s->container, strlen(k8s->container),
						SW_CUT_NONE);
			}
			sw_puts(o, "}");
		}
	}
}

/* A syscall, or an io_uring operation (uring: "via":"io_uring", "syscall":"io_uring:<op>", nr
 * the opcode, args [fd, user_data, open flags, 0, 0, 0], duration from submission). */
static void sw_json_syscall(struct sw_out *o, const struct sw_syscall_event *ev, int uring)
{
	const struct sw_sc_fmt *f = uring ? &sw_uring[ev->nr < SW_URING_OPS ? ev->nr : 0]
					  : &sw_sc[ev->nr < SW_MAX_SYSCALLS ? ev->nr : 0];
	struct sw_sc_view v;
	int64_t ret = ev->ret;

	sw_view_syscall(ev, &v);
	sw_json_hdr(o, &ev->hdr, "syscall");
	sw_puts(o, ",\"syscall\":");
	if (uring) {
		char name[sizeof(f->name) + 16] = "io_uring:";
		size_t n = strlen(name);

		for (size_t i = 0; i < sizeof(f->name) && f->name[i]; i++)
			name[n++] = (f->name[i] >= 'A' && f->name[i] <= 'Z') ? f->name[i] + 32
									    : f->name[i];
		sw_put_json_str(o, name, n, SW_CUT_NONE);
		sw_puts(o, ",\"via\":\"io_uring\"");
		if (ev->flags & SW_F_URING_SQPOLL)
			sw_puts(o, ",\"sqpoll\":true");
		if (ev->flags & SW_F_URING_FIXED)
			sw_puts(o, ",\"fixed_file\":true");
	} else {
		sw_put_json_str(o, f->name, sizeof(f->name), SW_CUT_NONE);
	}
	sw_puts(o, ",\"nr\":");
	sw_put_u64(o, ev->nr);
	sw_puts(o, ",\"op\":\"");
	sw_puts(o, sw_verb_name[f->verb]);
	sw_puts(o, "\",\"ret\":");
	sw_put_i64(o, ret);
	if (sw_is_err(ret)) {
		sw_puts(o, ",\"error\":\"");
		sw_put_errno(o, ret);
		sw_puts(o, "\"");
	} else if ((f->flags & SW_FMT_BYTES) && ret >= 0) {
		sw_puts(o, ",\"bytes\":");
		sw_put_i64(o, ret);
	}
	if ((f->flags & SW_FMT_RET_FD) && ret >= 0) {
		sw_puts(o, ",\"new_fd\":");
		sw_put_i64(o, ret);
	}
	if (f->verb == SW_VERB_SPAWN && ret > 0) {
		sw_puts(o, ",\"child_pid\":");
		sw_put_i64(o, ret);
	}
	sw_puts(o, ",\"duration_ns\":");
	sw_put_u64(o, ev->duration_ns);
	sw_puts(o, ",\"args\":[");
	for (int i = 0; i < 6; i++) {
		if (i)
			sw_put(o, ",", 1);
		sw_put_u64(o, ev->args[i]);
	}
	sw_puts(o, "]");
	if (v.path) {
		sw_puts(o, ",\"path\":");
		sw_put_json_str(o, v.path, ev->path_len, sw_path_cut(ev, SW_F_PATH_TRUNC));
	}
	if (v.path2) {
		sw_puts(o, ",\"path2\":");
		sw_put_json_str(o, v.path2, ev->path2_len, sw_path_cut(ev, SW_F_PATH2_TRUNC));
	}
	if (ev->fd_kind != SW_FD_NONE) {
		sw_puts(o, ",\"fd\":");
		sw_put_i64(o, (int)ev->args[0]);
		sw_puts(o, ",\"fd_kind\":\"");
		sw_puts(o, ev->fd_kind < 9 ? sw_fd_kind[ev->fd_kind] : "?");
		sw_puts(o, "\"");
		if (v.fdname) {
			sw_puts(o, ",\"fd_name\":");
			sw_put_json_str(o, v.fdname, ev->fdname_len, sw_fdname_cut(ev));
		} else if (ev->fd_kind < 9 && sw_fd_label[ev->fd_kind][0]) {
			sw_puts(o, ",\"fd_name\":\"");
			sw_puts(o, sw_fd_label[ev->fd_kind]);
			sw_puts(o, "\"");
		}
	}
	if (v.family) {
		sw_puts(o, ",\"addr\":");
		sw_put_json_str(o, v.addrbuf, strlen(v.addrbuf), SW_CUT_NONE);
		sw_puts(o, ",\"family\":\"");
		sw_puts(o, v.family);
		sw_puts(o, "\"");
	}
	if (ev->flags & (SW_F_PATH_TRUNC | SW_F_PATH2_TRUNC | SW_F_FDNAME_TRUNC)) {
		const char *sep = "";

		sw_puts(o, ",\"truncated\":true,\"truncated_fields\":[");
		if (v.path && (ev->flags & SW_F_PATH_TRUNC)) {
			sw_puts(o, "\"path\"");
			sep = ",";
		}
		if (v.path2 && (ev->flags & SW_F_PATH2_TRUNC)) {
			sw_puts(o, sep);
			sw_puts(o, "\"path2\"");
			sep = ",";
		}
		if (v.fdname && (ev->flags & SW_F_FDNAME_TRUNC)) {
			sw_puts(o, sep);
			sw_puts(o, "\"fd_name\"");
		}
		sw_puts(o, "]");
	}
	sw_puts(o, "}\n");
}

static void sw_json_exec(struct sw_out *o, const struct sw_exec_event *ev)
{
	size_t fl = ev->filename_len, al = ev->argv_len;
	const char *argv = (const char *)ev->data + fl, *prev = NULL;
	size_t pn = 0;
	size_t i = 0;
	int first = 1;

	sw_json_hdr(o, &ev->hdr, "exec");
	sw_puts(o, ",\"filename\":");
	sw_put_json_str(o, (const char *)ev->data, fl,
		     ev->flags & SW_F_PATH_TRUNC ? SW_CUT_END : SW_CUT_NONE);
	sw_puts(o, ",\"argc\":");
	sw_put_u64(o, ev->argc);
	sw_puts(o, ",\"ancestry\":[");
	for (int k = (ev->ancestry_len < SW_ANCESTRY_MAX ? ev->ancestry_len : SW_ANCESTRY_MAX) - 1;
	     k >= 0; k--) {
		sw_puts(o, "{\"pid\":");
		sw_put_u64(o, ev->ancestry[k].pid);
		sw_puts(o, ",\"comm\":");
		sw_put_json_str(o, ev->ancestry[k].comm, sizeof(ev->ancestry[k].comm), SW_CUT_NONE);
		sw_puts(o, k ? "}," : "}");
	}
	sw_puts(o, "],\"argv\":[");
	while (i < al) {
		size_t n = strnlen(argv + i, al - i);

		if (!first)
			sw_put(o, ",", 1);
		sw_put_arg(o, prev, pn, argv + i, n,
			   (ev->flags & SW_F_ARGV_TRUNC) && i + n >= al, sw_put_json_str);
		first = 0;
		prev = argv + i;
		pn = n;
		i += n + 1;
	}
	sw_puts(o, "]");
	if (ev->flags & (SW_F_ARGV_TRUNC | SW_F_PATH_TRUNC)) {
		sw_puts(o, ",\"truncated\":true,\"truncated_fields\":[");
		if (ev->flags & SW_F_PATH_TRUNC)
			sw_puts(o, ev->flags & SW_F_ARGV_TRUNC ? "\"filename\"," : "\"filename\"");
		if (ev->flags & SW_F_ARGV_TRUNC)
			sw_puts(o, "\"argv\"");
		sw_puts(o, "]");
	}
	sw_puts(o, "}\n");
}

static void sw_json_denial(struct sw_out *o, const struct swp_denial *d)
{
	struct sw_denial_view v;
	const char *op = sw_name(SW_NAMES_OP, d->op);
	const char *action = sw_name(SW_NAMES_ACTION, d->action);
	const char *tier = sw_name(SW_NAMES_TIER, d->tier);
	const char *policy = sw_policy_name();

	sw_view_denial(d, &v);
	sw_json_hdr(o, (const void *)d, "denied");
	sw_puts(o, ",\"op\":");
	if (op) {
		sw_put_json_str(o, op, strlen(op), SW_CUT_NONE);
	} else {
		sw_puts(o, "\"op");
		sw_put_u64(o, d->op);
		sw_puts(o, "\"");
	}
	sw_puts(o, ",\"target\":");
	sw_put_json_str(o, v.target, v.target_len, v.cut);
	sw_puts(o, ",\"action\":");
	sw_put_json_str(o, action ? action : "?", action ? strlen(action) : 1, SW_CUT_NONE);
	sw_puts(o, ",\"tier\":");
	sw_put_json_str(o, tier ? tier : "?", tier ? strlen(tier) : 1, SW_CUT_NONE);
	sw_puts(o, ",\"policy\":");
	sw_put_json_str(o, policy, strlen(policy), SW_CUT_NONE);
	sw_puts(o, ",\"rule\":");
	sw_put_json_str(o, v.rule, strlen(v.rule), SW_CUT_NONE);
	if (v.syscall) {
		sw_puts(o, ",\"syscall\":");
		sw_put_json_str(o, v.syscall, strlen(v.syscall), SW_CUT_NONE);
		sw_puts(o, ",\"nr\":");
		sw_put_u64(o, d->nr);
	}
	if (v.cut != SW_CUT_NONE)
		sw_puts(o, ",\"truncated\":true,\"truncated_fields\":[\"target\"]");
	sw_puts(o, "}\n");
}

void sw_json_record(struct sw_out *o, const struct sw_event_hdr *h)
{
	switch (h->type) {
	case SW_EV_SYSCALL:
		sw_json_syscall(o, (const void *)h, 0);
		break;
	case SW_EV_URING:
		sw_json_syscall(o, (const void *)h, 1);
		break;
	case SW_EV_EXEC:
		sw_json_exec(o, (const void *)h);
		break;
	case SW_EV_FORK:
		sw_json_hdr(o, h, "fork");
		sw_puts(o, ",\"child_pid\":");
		sw_put_u64(o, ((const struct sw_fork_event *)h)->child_pid);
		sw_puts(o, "}\n");
		break;
	case SW_EV_EXIT: {
		const struct sw_exit_event *e = (const void *)h;

		sw_json_hdr(o, h, "exit");
		sw_puts(o, ",\"exit_code\":");
		sw_put_i64(o, e->exit_code);
		if (e->signal) {
			sw_puts(o, ",\"signal\":\"");
			sw_puts(o, sw_sig_name(e->signal));
			sw_puts(o, "\"");
		}
		sw_puts(o, "}\n");
		break;
	}
	case SWP_EV_DENIAL:
		sw_json_denial(o, (const void *)h);
		break;
	}
}
