// SPDX-License-Identifier: GPL-2.0
/* swatch enforcer: denies what a policy forbids to a target (a process tree or a cgroup).
 *
 * Tiers, strongest first; userspace probes them and loads, per operation, only the programs
 * of the tier it chose (bpf_program__set_autoload), then writes its choice to rules.tier[]:
 *   lsm/<hook>                BPF LSM (needs `bpf` in the active LSM list): blocked before
 *   fmod_ret/security_<hook>  the same hooks through fmod_ret: blocked before
 *   cgroup/<sock hook>        attached at the cgroup v2 root, filtered here: blocked before
 *   raw_tp/sys_enter          bpf_send_signal(SIGKILL): killed after (the call may complete)
 * Every denial is counted per CPU (per op, per path rule) and sent to its own ring buffer. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "policy.h"
#include "vfs_path.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define SIGKILL 9
#define AF_INET 2
#define AF_INET6 10
#define SOCK_DGRAM 2
#define MAY_WRITE 2
#define MAY_READ 4
#define FMODE_WRITE 2
#define AT_REMOVEDIR 0x200
#define AT_EMPTY_PATH 0x1000
#define O_WRONLY 01
#define O_RDWR 02
#define O_CREAT 0100
#define O_TRUNC 01000
#define SWP_BUF (2 * SWP_PATH_MAX)
#define SWP_BUF_MASK (SWP_BUF - 1)
#define SWP_PATH_MASK (SWP_PATH_MAX - 1)
_Static_assert(SWP_PATH_MAX == VFS_PATH_MAX, "policy paths and walked paths differ in size");

const volatile struct swp_config cfg SEC(".rodata.cfg") = {};

struct scratch {
	struct swp_denial ev;
	char buf[SWP_BUF];     /* a path: right-aligned from the dentry walk, or from offset 0 */
	char buf2[SWP_BUF];    /* rename's second path */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} denials SEC(".maps");

/* SWP_TARGET_PID: the target's processes (tgids), children added at fork, each removed when
 * its last thread exits. Sized by the loader (--max-pids); memory only for live entries. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, u8);
} targets SEC(".maps");

/* The target's processes "targets" had no room for, marked per thread at fork (the mark dies
 * with the thread). The LSM, fmod_ret and reactive tiers police them like any other; the
 * cgroup tier sees only "targets", so when it is in use they are killed at their first
 * syscall (cfg.kill_untracked): the enforcer fails closed, never open. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, u32);
} untracked SEC(".maps");

/* Set once "targets" has refused a child: until then nobody pays for the mark lookup. */
u32 overflowed = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct swp_rules);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SWP_MAX_SYSCALLS);
	__type(key, u32);
	__type(value, struct swp_syscall);
} reactive SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct swp_counts);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct swp_meta);
} meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

static const u32 zero = 0;

/* The cgroup programs' test: the cgroup, or the tgid in "targets" (nothing else). */
static __always_inline bool in_targets(void)
{
	u32 tgid;

	if (cfg.mode == SWP_TARGET_CGROUP)
		return bpf_get_current_ancestor_cgroup_id(cfg.target_cgroup_level) == cfg.target_cgroup;
	tgid = bpf_get_current_pid_tgid() >> 32;
	return bpf_map_lookup_elem(&targets, &tgid) != NULL;
}

static __always_inline u32 *untracked_mark(void)
{
	if (!overflowed)
		return NULL;
	return bpf_task_storage_get(&untracked, bpf_get_current_task_btf(), 0, 0);
}

/* Called first by every other program: is the current task part of the target? */
static __always_inline bool targeted(void)
{
	if (in_targets())
		return true;
	return cfg.mode == SWP_TARGET_PID && untracked_mark() != NULL;
}

static __always_inline void count_tracking(u32 which)
{
	struct swp_counts *c = bpf_map_lookup_elem(&counts, &zero);

	if (!c)
		return;
	if (which == 0)
		__sync_fetch_and_add(&c->untracked, 1);
	else if (which == 1)
		__sync_fetch_and_add(&c->killed_untracked, 1);
	else
		__sync_fetch_and_add(&c->unmarked, 1);
}

static __always_inline struct swp_rules *get_rules(void)
{
	return bpf_map_lookup_elem(&rules, &zero);
}

/* ------------------------------------------------------------------ paths */

struct match_ctx {
	struct swp_rules *r;
	char *buf;
	u32 start;
	u32 opbit;
	int hit;
};

/* Does path rule i cover the path at buf[start]? Whole components only: /etc covers
 * /etc and /etc/x, not /etcetera. */
static long match_rule(u64 i, void *ctx)
{
	struct match_ctx *m = ctx;
	struct swp_path_rule *pr;
	u32 len, j;
	char c;

	if (i >= SWP_MAX_PATHS || i >= m->r->npaths)
		return 1;
	pr = &m->r->paths[i & (SWP_MAX_PATHS - 1)];
	if (!(pr->ops & m->opbit))
		return 0;
	len = pr->len;
	if (len == 0 || len >= SWP_PATH_MAX)
		return 0;
	for (j = 0; j < SWP_PATH_MAX; j++) {
		if (j >= len)
			break;
		if (m->buf[(m->start + j) & SWP_BUF_MASK] != pr->path[j])
			return 0;
	}
	c = m->buf[(m->start + len) & SWP_BUF_MASK];
	if (len == 1 || c == 0 || c == '/') {
		m->hit = i;
		return 1;
	}
	return 0;
}

/* The rule that denies op on the path at buf[start] (NULL buf: no path), or -1.
 * Returns SWP_RULE_BLOCK for a 'block' rule. */
static __always_inline int denied_by(struct swp_rules *r, u32 op, char *buf, u32 start)
{
	struct match_ctx m = { .r = r, .buf = buf, .start = start, .opbit = 1u << op, .hit = -1 };

	if (r->block & m.opbit)
		return SWP_RULE_BLOCK;
	if (!buf || !(r->path_ops & m.opbit))
		return -1;
	bpf_loop(SWP_MAX_PATHS, match_rule, &m, 0);
	return m.hit;
}

/* ------------------------------------------------------------------ reporting */

static __always_inline struct scratch *get_scratch(void)
{
	return bpf_map_lookup_elem(&scratch, &zero);
}

/* Count the denial and send its record; the caller fills s->ev's target fields first. */
static __always_inline void report(struct scratch *s, u32 op, u8 tier, int rule, u32 nr)
{
	struct swp_counts *c = bpf_map_lookup_elem(&counts, &zero);
	struct swp_denial *ev = &s->ev;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	u64 id = bpf_get_current_pid_tgid();
	long err;

	ev->type = SWP_EV_DENIAL;
	ev->size = sizeof(*ev);
	ev->cpu = bpf_get_smp_processor_id();
	ev->ktime_ns = bpf_ktime_get_ns();
	ev->pid = id >> 32;
	ev->tid = (u32)id;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->uid = (u32)bpf_get_current_uid_gid();
	ev->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ev->op = op;
	ev->tier = tier;
	ev->action = cfg.audit_only ? SWP_ACT_AUDIT
		     : tier == SWP_TIER_REACTIVE ? SWP_ACT_KILLED : SWP_ACT_BLOCKED;
	ev->rule = rule;
	ev->nr = nr;
	err = bpf_ringbuf_output(&denials, ev, sizeof(*ev), BPF_RB_FORCE_WAKEUP);
	if (!c)
		return;
	__sync_fetch_and_add(&c->ops[op & (SWP_OPS - 1)], 1);
	if (rule >= 0 && rule < SWP_MAX_PATHS)
		__sync_fetch_and_add(&c->rules[rule & (SWP_MAX_PATHS - 1)], 1);
	__sync_fetch_and_add(&c->emitted, 1);
	if (err)
		__sync_fetch_and_add(&c->dropped, 1);
}

static __always_inline void set_target_none(struct scratch *s)
{
	s->ev.target_kind = SWP_TGT_NONE;
	s->ev.target_len = 0;
	s->ev.trunc = 0;
	s->ev.aux = 0;
	s->ev.aux2 = 0;
	s->ev.target[0] = 0;
}

/* The path at buf[start] (kernel memory) becomes the record's target. */
static __always_inline void set_target_path(struct scratch *s, char *buf, u32 start, u32 trunc)
{
	u32 len = SWP_PATH_MAX - (start & SWP_PATH_MASK);

	set_target_none(s);
	s->ev.target_kind = SWP_TGT_PATH;
	s->ev.trunc = trunc;
	if (len > SWP_PATH_MAX)
		len = SWP_PATH_MAX;
	bpf_probe_read_kernel_str(s->ev.target, len, &buf[start & SWP_PATH_MASK]);
	s->ev.target_len = len;
}

static __always_inline void set_target_addr(struct scratch *s, const void *addr, u32 len,
					    bool user)
{
	set_target_none(s);
	if (len > sizeof(struct sockaddr_in6))
		len = sizeof(struct sockaddr_in6);
	if (!addr || !len)
		return;
	if (user ? bpf_probe_read_user(s->ev.target, len, addr)
		 : bpf_probe_read_kernel(s->ev.target, len, addr))
		return;
	s->ev.target_kind = SWP_TGT_ADDR;
	s->ev.target_len = len;
}

static __always_inline int verdict(u8 tier)
{
	if (cfg.audit_only)
		return 0;
	if (tier == SWP_TIER_REACTIVE) {
		bpf_send_signal(SIGKILL);
		return 0;
	}
	return -EPERM;
}

/* ------------------------------------------------------------------ the process tree */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(swp_fork, struct task_struct *parent, struct task_struct *child)
{
	u32 child_tgid = child->tgid;
	u8 one = 1;

	if (cfg.mode != SWP_TARGET_PID || !targeted())
		return 0;
	if (child_tgid == parent->tgid) {
		/* A new thread: covered by its tgid in "targets", or marked like its process. */
		if (untracked_mark() &&
		    !bpf_task_storage_get(&untracked, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE)) {
			count_tracking(2);
			if (!cfg.audit_only)
				bpf_send_signal(SIGKILL);
		}
		return 0;
	}
	if (!bpf_map_update_elem(&targets, &child_tgid, &one, BPF_ANY))
		return 0;
	/* "targets" is full (--max-pids). The child has not run yet: mark it, so that it is
	 * policed (or, with the cgroup tier, killed at its first syscall). */
	overflowed = 1;
	count_tracking(0);
	if (!bpf_task_storage_get(&untracked, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE)) {
		/* Not even a mark (no memory): the parent dies rather than leave it unpoliced. */
		count_tracking(2);
		if (!cfg.audit_only)
			bpf_send_signal(SIGKILL);
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(swp_exit, struct task_struct *task)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (cfg.mode != SWP_TARGET_PID || BPF_CORE_READ(task, signal, live.counter) > 0)
		return 0;
	bpf_map_delete_elem(&targets, &tgid);
	return 0;
}

/* ------------------------------------------------------------------ cgroup-BPF tier */

/* A sock_addr hook: 1 lets the call go on, 0 fails it with EPERM. */
/* v6 is a constant: a connect4 program may not even read user_ip6. */
static __always_inline int sock_addr_check(struct bpf_sock_addr *ctx, u32 op, bool v6)
{
	struct swp_rules *r;
	struct scratch *s;
	int rule;

	if (!in_targets() || !(r = get_rules()))
		return 1;
	rule = denied_by(r, op, NULL, 0);
	if (rule < 0 || !(s = get_scratch()))
		return 1;
	set_target_none(s);
	if (!v6) {
		struct sockaddr_in *sin = (void *)s->ev.target;

		sin->sin_family = AF_INET;
		sin->sin_port = ctx->user_port;
		sin->sin_addr.s_addr = ctx->user_ip4;
		s->ev.target_len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (void *)s->ev.target;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = ctx->user_port;
		sin6->sin6_addr.in6_u.u6_addr32[0] = ctx->user_ip6[0];
		sin6->sin6_addr.in6_u.u6_addr32[1] = ctx->user_ip6[1];
		sin6->sin6_addr.in6_u.u6_addr32[2] = ctx->user_ip6[2];
		sin6->sin6_addr.in6_u.u6_addr32[3] = ctx->user_ip6[3];
		s->ev.target_len = sizeof(*sin6);
	}
	s->ev.target_kind = SWP_TGT_ADDR;
	report(s, op, SWP_TIER_CGROUP, rule, 0xffffffff);
	return cfg.audit_only ? 1 : 0;
}

SEC("cgroup/connect4")
int swp_connect4(struct bpf_sock_addr *ctx) { return sock_addr_check(ctx, SWP_OP_CONNECT, false); }

SEC("cgroup/connect6")
int swp_connect6(struct bpf_sock_addr *ctx) { return sock_addr_check(ctx, SWP_OP_CONNECT, true); }

/* UDP sendmsg()/sendto() with an address: a connect in all but name. */
SEC("cgroup/sendmsg4")
int swp_sendmsg4(struct bpf_sock_addr *ctx) { return sock_addr_check(ctx, SWP_OP_CONNECT, false); }

SEC("cgroup/sendmsg6")
int swp_sendmsg6(struct bpf_sock_addr *ctx) { return sock_addr_check(ctx, SWP_OP_CONNECT, true); }

SEC("cgroup/bind4")
int swp_bind4(struct bpf_sock_addr *ctx) { return sock_addr_check(ctx, SWP_OP_BIND, false); }

SEC("cgroup/bind6")
int swp_bind6(struct bpf_sock_addr *ctx) { return sock_addr_check(ctx, SWP_OP_BIND, true); }

/* socket(AF_INET/AF_INET6, ...): the kernel calls this hook for those families only. */
SEC("cgroup/sock_create")
int swp_sock_create(struct bpf_sock *ctx)
{
	struct swp_rules *r;
	struct scratch *s;
	int rule;

	if (!in_targets() || !(r = get_rules()))
		return 1;
	rule = denied_by(r, SWP_OP_SOCKET, NULL, 0);
	if (rule < 0 || !(s = get_scratch()))
		return 1;
	set_target_none(s);
	s->ev.target_kind = SWP_TGT_SOCKET;
	s->ev.aux = ctx->family;
	s->ev.aux2 = ctx->type;
	report(s, SWP_OP_SOCKET, SWP_TIER_CGROUP, rule, 0xffffffff);
	return cfg.audit_only ? 1 : 0;
}

/* ------------------------------------------------------------------ reactive tier */

static __always_inline u64 syscall_arg(struct pt_regs *regs, u32 i)
{
	switch (i) {
	case 0: return PT_REGS_PARM1_CORE_SYSCALL(regs);
	case 1: return PT_REGS_PARM2_CORE_SYSCALL(regs);
	case 2: return PT_REGS_PARM3_CORE_SYSCALL(regs);
	case 3: return PT_REGS_PARM4_CORE_SYSCALL(regs);
	case 4: return PT_REGS_PARM5_CORE_SYSCALL(regs);
	default: return 0;
	}
}

static __always_inline struct file *fd_file(u64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* A user path as passed, into buf[0..]; returns true if it is absolute (comparable). */
static __always_inline bool user_path(char *buf, u64 uptr)
{
	long n = bpf_probe_read_user_str(buf, SWP_PATH_MAX, (void *)uptr);

	if (n <= 0) {
		buf[0] = 0;
		return false;
	}
	return buf[0] == '/';
}

/* Does this open (SWP_R_OPEN_WRITE) write, create or truncate? */
static __always_inline bool opens_for_write(struct pt_regs *regs, struct swp_syscall *sc)
{
	u64 flags = 0;

	if (sc->fd_arg >= 6)
		return true; /* creat() */
	flags = syscall_arg(regs, sc->fd_arg);
	if (sc->flags & SWP_R_OPENAT2) {
		u64 uhow = flags;

		flags = 0;
		bpf_probe_read_user(&flags, sizeof(flags), (void *)uhow);
	}
	return flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC);
}

SEC("raw_tp/sys_enter")
int swp_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct swp_syscall *sc;
	struct swp_rules *r;
	struct scratch *s;
	struct pt_regs *regs;
	u32 nr, op;
	int rule = -1;

	/* A process "targets" had no room for, while the cgroup tier (which sees only
	 * "targets") holds part of the policy: killed before its first syscall does anything.
	 * Bystanders pay one load of a global until "targets" has been full once. */
	if (cfg.kill_untracked && cfg.mode == SWP_TARGET_PID && overflowed) {
		u32 *m = untracked_mark();

		if (m) {
			if (!*m) {
				*m = 1;
				count_tracking(1);
			}
			if (!cfg.audit_only)
				bpf_send_signal(SIGKILL);
			return 0;
		}
	}
	/* Every task on the machine comes through here: first the syscall number (an inlined
	 * array lookup), and only for a syscall the policy covers, the target check. */
	nr = ctx->args[1];
	if (nr >= SWP_MAX_SYSCALLS || !(sc = bpf_map_lookup_elem(&reactive, &nr)) ||
	    !(sc->flags & SWP_R_USED))
		return 0;
	if (!targeted())
		return 0;
	if (!(r = get_rules()) || !(s = get_scratch()))
		return 0;
	regs = (struct pt_regs *)ctx->args[0];
	op = sc->op;
	if (sc->flags & SWP_R_UNLINKAT) {
		if (syscall_arg(regs, 2) & AT_REMOVEDIR)
			op = SWP_OP_RMDIR;
	}
	if (op >= SWP_OPS || !(r->reactive & (1u << op)))
		return 0;
	set_target_none(s);

	if (sc->flags & SWP_R_SKIP_INET_ARG0) {
		u64 family = syscall_arg(regs, 0);

		if (family == AF_INET || family == AF_INET6)
			return 0; /* the cgroup tier holds these */
		s->ev.target_kind = SWP_TGT_SOCKET;
		s->ev.aux = family;
		s->ev.aux2 = syscall_arg(regs, 1);
		rule = denied_by(r, op, NULL, 0);
	} else if (sc->flags & SWP_R_KILL) {
		u32 self = bpf_get_current_pid_tgid() >> 32;
		u32 tid = (u32)bpf_get_current_pid_tgid();
		s64 pid = sc->path_arg < 6 ? (int)syscall_arg(regs, sc->path_arg) : -1;
		s64 sig = (int)syscall_arg(regs, sc->fd_arg);

		if (sig == 0 || (sc->path_arg < 6 && (pid == self || pid == tid)))
			return 0; /* probing, or signalling itself */
		s->ev.target_kind = SWP_TGT_PID;
		s->ev.aux = pid;
		s->ev.aux2 = sig;
		rule = denied_by(r, op, NULL, 0);
	} else if (op == SWP_OP_CONNECT || op == SWP_OP_BIND) {
		u64 uaddr = syscall_arg(regs, 1);
		u16 family = 0;

		bpf_probe_read_user(&family, sizeof(family), (void *)uaddr);
		if ((sc->flags & SWP_R_SKIP_INET_ADDR) && (family == AF_INET || family == AF_INET6))
			return 0;
		set_target_addr(s, (void *)uaddr, syscall_arg(regs, 2), true);
		rule = denied_by(r, op, NULL, 0);
	} else {
		/* A file: the fd's kernel-resolved path, or the path string as passed. */
		char *buf = NULL;
		u32 start = 0, trunc = 0;
		bool have = false;
		bool wr = (sc->flags & SWP_R_OPEN_WRITE) && opens_for_write(regs, sc);

		if (op == SWP_OP_WRITE && (sc->flags & SWP_R_OPEN_WRITE) && !wr)
			return 0; /* an open for reading, and only writes are denied */
		if (sc->fd_arg < 6 && !(sc->flags & SWP_R_OPEN_WRITE) &&
		    (!(sc->flags & SWP_R_EXEC_FD) ||
				       (syscall_arg(regs, 4) & AT_EMPTY_PATH))) {
			struct file *f = fd_file(syscall_arg(regs, sc->fd_arg));

			if (f) {
				start = file_path(f, s->buf, &trunc);
				buf = s->buf;
				have = true;
			}
		} else if (sc->path_arg < 6) {
			have = true;
			if (user_path(s->buf, syscall_arg(regs, sc->path_arg)))
				buf = s->buf;
		}
		rule = denied_by(r, op, buf, start);
		if (rule < 0 && wr && op != SWP_OP_WRITE && (r->reactive & (1u << SWP_OP_WRITE))) {
			rule = denied_by(r, SWP_OP_WRITE, buf, start);
			if (rule >= 0)
				op = SWP_OP_WRITE;
		}
		if (rule < 0 && sc->path2_arg < 6 && user_path(s->buf2, syscall_arg(regs, sc->path2_arg))) {
			rule = denied_by(r, op, s->buf2, 0);
			if (rule >= 0) {
				set_target_path(s, s->buf2, 0, 0);
				goto found;
			}
		}
		if (have)
			set_target_path(s, s->buf, start, trunc);
	}
	if (rule < 0)
		return 0;
found:
	report(s, op, SWP_TIER_REACTIVE, rule, nr);
	verdict(SWP_TIER_REACTIVE);
	return 0;
}

/* ------------------------------------------------------------------ LSM / fmod_ret tiers */

/* op on the file's resolved path: 0, or -EPERM (after reporting). */
static __always_inline int check_file(struct file *f, u32 op, u8 tier)
{
	struct swp_rules *r;
	struct scratch *s;
	u32 start, trunc = 0;
	int rule;

	if (!targeted() || !(r = get_rules()) || !(s = get_scratch()))
		return 0;
	if (!(r->block & (1u << op)) && !(r->path_ops & (1u << op)))
		return 0;
	start = file_path(f, s->buf, &trunc);
	rule = denied_by(r, op, s->buf, start);
	if (rule < 0)
		return 0;
	set_target_path(s, s->buf, start, trunc);
	report(s, op, tier, rule, 0xffffffff);
	return verdict(tier);
}

/* op on the entry `d` on the mount `mnt` (path_* hooks). */
static __always_inline int check_entry(struct vfsmount *mnt, struct dentry *d, u32 op, u8 tier)
{
	struct swp_rules *r;
	struct scratch *s;
	u32 start, trunc = 0;
	int rule;

	if (!targeted() || !(r = get_rules()) || !(s = get_scratch()))
		return 0;
	if (!(r->block & (1u << op)) && !(r->path_ops & (1u << op)))
		return 0;
	start = dentry_path(d, mnt, s->buf, &trunc);
	rule = denied_by(r, op, s->buf, start);
	if (rule < 0)
		return 0;
	set_target_path(s, s->buf, start, trunc);
	report(s, op, tier, rule, 0xffffffff);
	return verdict(tier);
}

static __always_inline int check_plain(u32 op, u8 tier)
{
	struct swp_rules *r;
	struct scratch *s;
	int rule;

	if (!targeted() || !(r = get_rules()))
		return 0;
	rule = denied_by(r, op, NULL, 0);
	if (rule < 0 || !(s = get_scratch()))
		return 0;
	set_target_none(s);
	report(s, op, tier, rule, 0xffffffff);
	return verdict(tier);
}

static __always_inline int check_sock_addr(struct sockaddr *addr, int len, u32 op, u8 tier)
{
	struct swp_rules *r;
	struct scratch *s;
	int rule;

	if (!targeted() || !(r = get_rules()))
		return 0;
	rule = denied_by(r, op, NULL, 0);
	if (rule < 0 || !(s = get_scratch()))
		return 0;
	set_target_addr(s, addr, len, false);
	report(s, op, tier, rule, 0xffffffff);
	return verdict(tier);
}

static __always_inline int do_socket_create(int family, int type, int kern, u8 tier)
{
	struct swp_rules *r;
	struct scratch *s;
	int rule;

	if (kern || !targeted() || !(r = get_rules()))
		return 0;
	rule = denied_by(r, SWP_OP_SOCKET, NULL, 0);
	if (rule < 0 || !(s = get_scratch()))
		return 0;
	set_target_none(s);
	s->ev.target_kind = SWP_TGT_SOCKET;
	s->ev.aux = family;
	s->ev.aux2 = type;
	report(s, SWP_OP_SOCKET, tier, rule, 0xffffffff);
	return verdict(tier);
}

static __always_inline int do_sendmsg(struct socket *sock, struct msghdr *msg, u8 tier)
{
	void *name = BPF_CORE_READ(msg, msg_name);
	int len = BPF_CORE_READ(msg, msg_namelen);

	/* Only datagrams to an explicit address: a connected socket was checked at connect. */
	if (!name || len <= 0 || BPF_CORE_READ(sock, type) != SOCK_DGRAM)
		return 0;
	return check_sock_addr(name, len, SWP_OP_CONNECT, tier);
}

static __always_inline int do_file_open(struct file *f, u8 tier)
{
	int ret = check_file(f, SWP_OP_FILE_OPEN, tier);

	/* Opening for writing (O_TRUNC truncates here) counts as a write. */
	if (!ret && (BPF_CORE_READ(f, f_mode) & FMODE_WRITE))
		ret = check_file(f, SWP_OP_WRITE, tier);
	return ret;
}

static __always_inline int do_file_permission(struct file *f, int mask, u8 tier)
{
	int ret = 0;

	if (mask & MAY_WRITE)
		ret = check_file(f, SWP_OP_WRITE, tier);
	if (!ret && (mask & MAY_READ))
		ret = check_file(f, SWP_OP_READ, tier);
	return ret;
}

static __always_inline int do_task_kill(struct task_struct *p, int sig, u8 tier)
{
	struct swp_rules *r;
	struct scratch *s;
	int rule;

	if (!sig || !targeted() || !(r = get_rules()))
		return 0;
	if (BPF_CORE_READ(p, tgid) == bpf_get_current_pid_tgid() >> 32)
		return 0; /* itself */
	rule = denied_by(r, SWP_OP_KILL, NULL, 0);
	if (rule < 0 || !(s = get_scratch()))
		return 0;
	set_target_none(s);
	s->ev.target_kind = SWP_TGT_PID;
	s->ev.aux = BPF_CORE_READ(p, tgid);
	s->ev.aux2 = sig;
	report(s, SWP_OP_KILL, tier, rule, 0xffffffff);
	return verdict(tier);
}

static __always_inline int do_rename(const struct path *old_dir, struct dentry *old_dentry,
				     const struct path *new_dir, struct dentry *new_dentry, u8 tier)
{
	int ret = check_entry(BPF_CORE_READ(old_dir, mnt), old_dentry, SWP_OP_RENAME, tier);

	if (!ret)
		ret = check_entry(BPF_CORE_READ(new_dir, mnt), new_dentry, SWP_OP_RENAME, tier);
	return ret;
}

/* A hard link to a protected file would be a second, unprotected name for it. */
static __always_inline int do_link(struct dentry *old_dentry, const struct path *new_dir,
				   struct dentry *new_dentry, u8 tier)
{
	struct vfsmount *mnt = BPF_CORE_READ(new_dir, mnt); /* a link never crosses mounts */
	int ret = check_entry(mnt, old_dentry, SWP_OP_WRITE, tier);

	if (!ret)
		ret = check_entry(mnt, new_dentry, SWP_OP_WRITE, tier);
	return ret;
}

/* Each hook twice: as a BPF LSM program and as fmod_ret on the security_* function. */
#define SWP_HOOK(hook, expr, ...)                                            \
	SEC("lsm/" #hook)                                                    \
	int BPF_PROG(swp_lsm_##hook, __VA_ARGS__)                            \
	{                                                                    \
		const u8 T = SWP_TIER_LSM;                                   \
		return expr;                                                 \
	}                                                                    \
	SEC("fmod_ret/security_" #hook)                                      \
	int BPF_PROG(swp_fmr_##hook, __VA_ARGS__)                            \
	{                                                                    \
		const u8 T = SWP_TIER_FMOD_RET;                              \
		return expr;                                                 \
	}

SEC("lsm/bprm_check_security")
int BPF_PROG(swp_lsm_bprm_check, struct linux_binprm *bprm)
{
	return check_file(BPF_CORE_READ(bprm, file), SWP_OP_EXEC, SWP_TIER_LSM);
}

SEC("fmod_ret/security_bprm_check")
int BPF_PROG(swp_fmr_bprm_check, struct linux_binprm *bprm)
{
	return check_file(BPF_CORE_READ(bprm, file), SWP_OP_EXEC, SWP_TIER_FMOD_RET);
}

SWP_HOOK(file_open, do_file_open(file, T), struct file *file)
SWP_HOOK(file_permission, do_file_permission(file, mask, T), struct file *file, int mask)
SWP_HOOK(socket_connect, check_sock_addr(address, addrlen, SWP_OP_CONNECT, T),
	 struct socket *sock, struct sockaddr *address, int addrlen)
SWP_HOOK(socket_sendmsg, do_sendmsg(sock, msg, T), struct socket *sock, struct msghdr *msg,
	 int size)
SWP_HOOK(socket_bind, check_sock_addr(address, addrlen, SWP_OP_BIND, T),
	 struct socket *sock, struct sockaddr *address, int addrlen)
SWP_HOOK(socket_listen, check_plain(SWP_OP_LISTEN, T), struct socket *sock, int backlog)
SWP_HOOK(socket_create, do_socket_create(family, type, kern, T), int family, int type,
	 int protocol, int kern)
SWP_HOOK(task_kill, do_task_kill(p, sig, T), struct task_struct *p, struct kernel_siginfo *info,
	 int sig, const struct cred *cred)
SWP_HOOK(task_alloc, check_plain(SWP_OP_FORK, T), struct task_struct *task,
	 unsigned long clone_flags)
SWP_HOOK(path_unlink, check_entry(BPF_CORE_READ(dir, mnt), dentry, SWP_OP_UNLINK, T), const struct path *dir,
	 struct dentry *dentry)
SWP_HOOK(path_rmdir, check_entry(BPF_CORE_READ(dir, mnt), dentry, SWP_OP_RMDIR, T), const struct path *dir,
	 struct dentry *dentry)
SWP_HOOK(path_mkdir, check_entry(BPF_CORE_READ(dir, mnt), dentry, SWP_OP_MKDIR, T), const struct path *dir,
	 struct dentry *dentry, umode_t mode)
SWP_HOOK(path_rename, do_rename(old_dir, old_dentry, new_dir, new_dentry, T),
	 const struct path *old_dir, struct dentry *old_dentry, const struct path *new_dir,
	 struct dentry *new_dentry)
/* New entries in a protected directory are writes to it (open(O_CREAT), mknod, symlink). */
SWP_HOOK(path_mknod, check_entry(BPF_CORE_READ(dir, mnt), dentry, SWP_OP_WRITE, T), const struct path *dir,
	 struct dentry *dentry, umode_t mode, unsigned int dev)
SWP_HOOK(path_symlink, check_entry(BPF_CORE_READ(dir, mnt), dentry, SWP_OP_WRITE, T), const struct path *dir,
	 struct dentry *dentry, const char *old_name)
SWP_HOOK(path_link, do_link(old_dentry, new_dir, new_dentry, T), struct dentry *old_dentry,
	 const struct path *new_dir, struct dentry *new_dentry)
SWP_HOOK(path_truncate, check_entry(BPF_CORE_READ(path, mnt), BPF_CORE_READ(path, dentry), SWP_OP_WRITE, T),
	 const struct path *path)
