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
#include "defs.bpf.h"
#include "maps.bpf.h"
#include "event.bpf.h"
#include "task.bpf.h"
#include "syscall_args.bpf.h"
#include "targets.bpf.h"
#include "vfs_path.bpf.h"
#include "uring.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define SWP_NORM_DEPTH 64       /* components a reactive path may keep after normalising */
#define SWP_SENDMMSG_MAX 1024   /* UIO_MAXIOV: sendmmsg() sends at most this many */
#define SWP_BUF (2 * SWP_PATH_MAX)
#define SWP_BUF_MASK (SWP_BUF - 1)
#define SWP_PATH_MASK (SWP_PATH_MAX - 1)
#define NO_SYSCALL 0xffffffff   /* swp_denial.nr of a denial by a hook, not at sys_enter */
_Static_assert(SWP_PATH_MAX == VFS_PATH_MAX, "policy paths and walked paths differ in size");

const volatile struct swp_config cfg SEC(".rodata.cfg") = {};

struct scratch {
	struct swp_denial ev;
	char buf[SWP_BUF];     /* a path: right-aligned from the dentry walk, or from offset 0 */
	char buf2[SWP_BUF];    /* a second path (rename, link) */
	char raw[SWP_PATH_MAX];/* a user path as passed (reactive tier) */
	char base[SWP_BUF];    /* the directory it is relative to: root, cwd or dirfd (walked) */
	u16 comp[SWP_NORM_DEPTH]; /* normalising: where each kept component starts */
	struct {
		u32 w, cstart, depth;
		int state;
		u32 second;
	} norm;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} denials SEC(".maps");

/* SW_TARGET_PID: the target's processes (tgids), children added at fork, each removed when
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
	__uint(max_entries, SWP_MAX_PHASES);
	__type(key, u32);
	__type(value, struct swp_rules);
} rules SEC(".maps");

/* The current phase: the entry of "rules" every check reads (see struct swp_phase_state). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct swp_phase_state);
} phase SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SW_MAX_SYSCALLS);
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

/* The cgroup programs' test: the cgroup, or the tgid in "targets" (nothing else). */
static __always_inline bool in_targets(void)
{
	u32 tgid;

	if (cfg.mode == SW_TARGET_CGROUP)
		return in_cgroup_tree(cfg.target_cgroup, cfg.target_cgroup_level);
	tgid = bpf_get_current_pid_tgid() >> 32;
	return tgid_listed(&targets, tgid);
}

static __always_inline u32 *untracked_mark(void)
{
	if (!overflowed)
		return NULL;
	return task_mark(&untracked, bpf_get_current_task_btf());
}

/* Called first by every other program: is the current task part of the target? */
static __always_inline bool targeted(void)
{
	if (in_targets())
		return true;
	return cfg.mode == SW_TARGET_PID && untracked_mark() != NULL;
}

/* The current phase's rules: one read of the phase id, then that entry. */
static __always_inline struct swp_rules *get_rules(void)
{
	struct swp_phase_state *ph = bpf_map_lookup_elem(&phase, &zero);
	u32 id = ph ? *(volatile u32 *)&ph->current : 0;

	return bpf_map_lookup_elem(&rules, &id);
}

/* ------------------------------------------------------------------ paths */

struct match_ctx {
	struct swp_rules *r;
	char *buf;
	u32 start;
	u32 opbit;
	u32 anc_len;   /* > 1: also match when the path (this long) is a directory above the rule's */
	int hit;
};

/* Does path rule i cover the path at buf[start]? Whole components only: /etc covers
 * /etc and /etc/x, not /etcetera. With anc_len, /a (anc_len 2) also matches the rule /a/etc:
 * renaming /a would move /a/etc. */
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
		c = m->buf[(m->start + j) & SWP_BUF_MASK];
		if (c != pr->path[j]) {
			/* the path ended (j == its length) where the rule goes on with '/' */
			if (c == 0 && j == m->anc_len && j > 1 && pr->path[j] == '/') {
				m->hit = i;
				return 1;
			}
			return 0;
		}
	}
	c = m->buf[(m->start + len) & SWP_BUF_MASK];
	if (len == 1 || c == 0 || c == '/') {
		m->hit = i;
		return 1;
	}
	return 0;
}

/* The rule that denies op on the path at buf[start] (NULL buf: no path), or -1.
 * Returns SWP_RULE_BLOCK for a 'block' rule. anc_len: see match_rule (0: off). */
static __always_inline int denied_by_anc(struct swp_rules *r, u32 op, char *buf, u32 start,
					 u32 anc_len)
{
	struct match_ctx m = { .r = r, .buf = buf, .start = start, .opbit = 1u << op,
			       .anc_len = anc_len, .hit = -1 };

	if (r->block & m.opbit)
		return SWP_RULE_BLOCK;
	if (!buf || !(r->path_ops & m.opbit))
		return -1;
	bpf_loop(SWP_MAX_PATHS, match_rule, &m, 0);
	return m.hit;
}

static __always_inline int denied_by(struct swp_rules *r, u32 op, char *buf, u32 start)
{
	return denied_by_anc(r, op, buf, start, 0);
}

/* ------------------------------------------------------------------ reporting */

static __always_inline struct scratch *get_scratch(void)
{
	return bpf_map_lookup_elem(&scratch, &zero);
}

/* Count the denial and send its record; the caller fills s->ev's target fields first, and
 * with own_hdr the header too. */
static __always_inline void report_as(struct scratch *s, u32 op, u8 tier, int rule, u32 nr,
				      bool own_hdr)
{
	struct swp_counts *c = bpf_map_lookup_elem(&counts, &zero);
	struct swp_denial *ev = &s->ev;
	long err;

	if (!own_hdr)
		fill_hdr(&ev->hdr, SWP_EV_DENIAL, bpf_get_current_pid_tgid());
	ev->hdr.size = sizeof(*ev);
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

static __always_inline void report(struct scratch *s, u32 op, u8 tier, int rule, u32 nr)
{
	report_as(s, op, tier, rule, nr, false);
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

/* The denial by a hook (not at sys_enter), once s->ev's target is filled: reported, and the
 * hook's return value. */
static __always_inline int deny(struct scratch *s, u32 op, u8 tier, int rule)
{
	report(s, op, tier, rule, NO_SYSCALL);
	return verdict(tier);
}

/* Where every check of an operation without a path begins: is the current task a target
 * (cgroup_hook: by "targets" or the cgroup alone, all that a cgroup program may test), and
 * does a rule deny op? Returns the rule, with *sp the scratch to report from; -1: allowed. */
static __always_inline int denying_rule(u32 op, bool cgroup_hook, struct scratch **sp)
{
	struct swp_rules *r;
	int rule;

	if (!(cgroup_hook ? in_targets() : targeted()) || !(r = get_rules()))
		return -1;
	rule = denied_by(r, op, NULL, 0);
	if (rule < 0 || !(*sp = get_scratch()))
		return -1;
	return rule;
}

/* Where every check of a path begins: is the current task a target, and does a rule deny op
 * on some path? *rp and *sp: the rules and the scratch to build the path in. */
static __always_inline bool path_rules_apply(u32 op, struct swp_rules **rp, struct scratch **sp)
{
	struct swp_rules *r;

	if (!targeted() || !(r = get_rules()) || !(*sp = get_scratch()))
		return false;
	*rp = r;
	return (r->block & (1u << op)) || (r->path_ops & (1u << op));
}

/* ------------------------------------------------------------------ the process tree */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(swp_fork, struct task_struct *parent, struct task_struct *child)
{
	bool thread = child->tgid == parent->tgid;
	u32 failed;

	if (cfg.mode != SW_TARGET_PID || !targeted())
		return 0;
	/* A new process joins "targets". Where "targets" is full (--max-pids), the child (it has
	 * not run yet) is marked instead, so that it is policed (or, with the cgroup tier, killed
	 * at its first syscall). A new thread is covered by its tgid in "targets", or marked
	 * like its process. */
	failed = join_child(&targets, &untracked, child, thread, thread && untracked_mark());
	if (failed & SW_JOIN_NO_ROOM) {
		overflowed = 1;
		count_one(&counts, struct swp_counts, untracked);
	}
	if (failed & SW_JOIN_UNMARKED) {
		/* Not even a mark (no memory): the parent dies rather than leave it unpoliced. */
		count_one(&counts, struct swp_counts, unmarked);
		if (!cfg.audit_only)
			bpf_send_signal(SIGKILL);
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(swp_exit, struct task_struct *task)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (cfg.mode != SW_TARGET_PID || other_threads_live(task))
		return 0;
	leave_process(&targets, tgid);
	return 0;
}

/* ------------------------------------------------------------------ cgroup-BPF tier */

/* A sock_addr hook: 1 lets the call go on, 0 fails it with EPERM. */
/* v6 is a constant: a connect4 program may not even read user_ip6. */
static __always_inline int sock_addr_check(struct bpf_sock_addr *ctx, u32 op, bool v6)
{
	struct scratch *s;
	int rule = denying_rule(op, true, &s);

	if (rule < 0)
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
	report(s, op, SWP_TIER_CGROUP, rule, NO_SYSCALL);
	return cfg.audit_only ? 1 : 0;
}

/* One sock_addr program: swp_<hook>, attached at cgroup/<hook>. */
#define SWP_SOCK_ADDR_HOOK(hook, op, v6)                                     \
	SEC("cgroup/" #hook)                                                 \
	int swp_##hook(struct bpf_sock_addr *ctx)                            \
	{                                                                    \
		return sock_addr_check(ctx, op, v6);                         \
	}

SWP_SOCK_ADDR_HOOK(connect4, SWP_OP_CONNECT, false)
SWP_SOCK_ADDR_HOOK(connect6, SWP_OP_CONNECT, true)
/* UDP sendmsg()/sendto() with an address: a connect in all but name. */
SWP_SOCK_ADDR_HOOK(sendmsg4, SWP_OP_CONNECT, false)
SWP_SOCK_ADDR_HOOK(sendmsg6, SWP_OP_CONNECT, true)
SWP_SOCK_ADDR_HOOK(bind4, SWP_OP_BIND, false)
SWP_SOCK_ADDR_HOOK(bind6, SWP_OP_BIND, true)

/* socket(AF_INET/AF_INET6, ...): the kernel calls this hook for those families only. */
SEC("cgroup/sock_create")
int swp_sock_create(struct bpf_sock *ctx)
{
	struct scratch *s;
	int rule = denying_rule(SWP_OP_SOCKET, true, &s);

	if (rule < 0)
		return 1;
	set_target_none(s);
	s->ev.target_kind = SWP_TGT_SOCKET;
	s->ev.aux = ctx->family;
	s->ev.aux2 = ctx->type;
	report(s, SWP_OP_SOCKET, SWP_TIER_CGROUP, rule, NO_SYSCALL);
	return cfg.audit_only ? 1 : 0;
}

/* ------------------------------------------------------------------ reactive tier */

/* How a user path came out of resolve_user_path(). */
#define UP_NONE 1       /* no path to compare (NULL or empty: the call fails, or uses an fd) */
#define UP_UNCHECKED 2  /* unreadable, or too long to compare: denied where a path rule could
			 * apply (fail closed) */

/* Normalising: the state (scratch.norm: w, where the next output byte goes, w <= i, so it
 * is done in place; cstart, where the current component starts; depth, components kept;
 * state 0 going, 1 done, 2 too deep) lives in the scratch map, not on the stack, so the
 * verifier sees unknown values in the bpf_loop callback and checks it once, not per byte. */
struct norm_ctx {
	struct scratch *s;
};

/* One byte of the path: collapse '//', drop '.', let '..' drop the component before it
 * (lexically: a symlink is not followed, see docs/policy.md). */
static long norm_step(u64 i, void *ctx)
{
	struct scratch *sc = ((struct norm_ctx *)ctx)->s;
	typeof(sc->norm) *n = &sc->norm;
	char *out = n->second ? sc->buf2 : sc->buf;
	char c = out[(i + 1) & SWP_BUF_MASK];
	u32 w = n->w, cs = n->cstart, clen, d;

	if (w > i + 1 || w >= SWP_BUF || cs > w)
		return n->state = 2, 1;
	if (c != '/' && c != 0) {
		out[w & SWP_BUF_MASK] = c;
		n->w = w + 1;
		return 0;
	}
	clen = w - cs;
	if (clen == 1 && out[cs & SWP_BUF_MASK] == '.') {
		w = cs;
	} else if (clen == 2 && out[cs & SWP_BUF_MASK] == '.' &&
		   out[(cs + 1) & SWP_BUF_MASK] == '.') {
		d = n->depth;
		if (d > 0) {
			d--;
			n->depth = d;
			w = sc->comp[d & (SWP_NORM_DEPTH - 1)];
		} else {
			w = cs; /* '..' of the root is the root */
		}
	} else if (clen > 0) {
		d = n->depth;
		if (d >= SWP_NORM_DEPTH)
			return n->state = 2, 1;
		sc->comp[d & (SWP_NORM_DEPTH - 1)] = cs;
		n->depth = d + 1;
		if (c == '/')
			out[w++ & SWP_BUF_MASK] = '/';
	}
	n->w = w;
	n->cstart = w;
	if (c == 0)
		return n->state = 1, 1;
	return 0;
}

/* A user path, as the kernel will name it: joined to the task's root (absolute path), its
 * cwd, or the directory of dirfd (relative path; AT_FDCWD or SWP_NONE: the cwd), then
 * normalised lexically into s->buf (s->buf2 if second) from offset 0, NUL-terminated.
 * Returns its length, or -UP_NONE / -UP_UNCHECKED. A global function: verified once. */
__noinline int resolve_user_path(struct scratch *s, u32 second, u64 uptr, s64 dirfd,
			     u32 from_kernel)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct norm_ctx nc = { .s = s };
	char *out;
	u32 w;
	struct dentry *d;
	struct vfsmount *mnt;
	struct file *f;
	u32 start, blen, trunc = 0;
	long rlen;

	if (!s)
		return -UP_UNCHECKED;
	out = second ? s->buf2 : s->buf;
	s->raw[0] = 0;
	/* from_kernel: io_uring's copy of the path (struct filename), made before submission */
	rlen = from_kernel ? bpf_probe_read_kernel_str(s->raw, SWP_PATH_MAX, (void *)uptr)
			   : bpf_probe_read_user_str(s->raw, SWP_PATH_MAX, (void *)uptr);
	if (rlen < 0)
		return uptr ? -UP_UNCHECKED : -UP_NONE; /* e.g. a page not faulted in yet */
	if (rlen <= 1)
		return -UP_NONE;
	if (rlen >= SWP_PATH_MAX)
		return -UP_UNCHECKED;
	if (s->raw[0] == '/') {
		d = BPF_CORE_READ(task, fs, root.dentry);
		mnt = BPF_CORE_READ(task, fs, root.mnt);
	} else if (dirfd == AT_FDCWD || dirfd == SWP_NONE) {
		d = BPF_CORE_READ(task, fs, pwd.dentry);
		mnt = BPF_CORE_READ(task, fs, pwd.mnt);
	} else {
		f = current_fd_file(dirfd);
		if (!f)
			return -UP_UNCHECKED;
		d = BPF_CORE_READ(f, f_path.dentry);
		mnt = BPF_CORE_READ(f, f_path.mnt);
	}
	start = dentry_path(d, mnt, s->base, &trunc);
	if (trunc)
		return -UP_UNCHECKED;
	start &= SWP_PATH_MASK;
	blen = SWP_PATH_MAX - 1 - start;
	if (blen <= 1)
		blen = 0; /* the base is "/" */
	blen &= SWP_PATH_MASK;
	if (blen)
		bpf_probe_read_kernel(out, blen, &s->base[start]);
	out[blen & SWP_PATH_MASK] = '/';
	bpf_probe_read_kernel(&out[(blen + 1) & SWP_PATH_MASK], rlen & SWP_PATH_MASK, s->raw);
	out[0] = '/';
	s->norm.w = 1;
	s->norm.cstart = 1;
	s->norm.depth = 0;
	s->norm.state = 0;
	s->norm.second = second;
	bpf_loop(SWP_BUF - 1, norm_step, &nc, 0);
	if (s->norm.state != 1)
		return -UP_UNCHECKED;
	w = s->norm.w;
	if (w > 1 && out[(w - 1) & SWP_BUF_MASK] == '/')
		w--;
	if (w >= SWP_PATH_MAX)
		return -UP_UNCHECKED;
	out[w & SWP_BUF_MASK] = 0;
	return w;
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
		if (bpf_probe_read_user(&flags, sizeof(flags), (void *)uhow))
			return true; /* unreadable: take it as a write (fail closed) */
	}
	return flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC);
}

struct vma_ctx {
	struct file *file;
	u64 end;
	bool shared_write;
};

static long vma_cb(struct task_struct *task, struct vm_area_struct *vma, void *ctx)
{
	struct vma_ctx *v = ctx;
	u64 fl = BPF_CORE_READ(vma, vm_flags);

	v->end = BPF_CORE_READ(vma, vm_end);
	v->file = BPF_CORE_READ(vma, vm_file);
	v->shared_write = (fl & VM_MAYSHARE) && (fl & VM_MAYWRITE);
	return 0;
}

struct mprot_ctx {
	u64 addr;
	u64 end;
	struct file *file;
	int state; /* 0 going, 1 found a shared writable file mapping, 2 cannot tell */
};

/* One mapping of the range mprotect() changes. */
static long mprot_step(u64 i, void *ctx)
{
	struct mprot_ctx *m = ctx;
	struct task_struct *task = bpf_get_current_task_btf();
	struct vma_ctx v = {};
	long err;

	if (m->addr >= m->end)
		return 1;
	err = bpf_find_vma(task, m->addr, vma_cb, &v, 0);
	if (err == -ENOENT)
		return 1; /* a hole: mprotect() fails with ENOMEM */
	if (err || v.end <= m->addr)
		return m->state = 2, 1;
	if (v.file && v.shared_write) {
		m->file = v.file;
		return m->state = 1, 1;
	}
	m->addr = v.end;
	return 0;
}

/* mprotect(addr, len, PROT_WRITE...): the file of a shared, writable-capable mapping in the
 * range (NULL: none). *unknown: the mappings could not be read (fail closed). */
static __always_inline struct file *mprotect_file(struct pt_regs *regs, bool *unknown)
{
	struct mprot_ctx m = { .addr = syscall_arg(regs, 0) };

	*unknown = false;
	if (!(syscall_arg(regs, 2) & PROT_WRITE))
		return NULL;
	m.end = m.addr + syscall_arg(regs, 1);
	if (m.end < m.addr)
		return NULL;
	bpf_loop(64, mprot_step, &m, 0);
	if (m.state == 0 && m.addr < m.end)
		m.state = 2; /* more than 64 mappings */
	*unknown = m.state == 2;
	return m.state == 1 ? m.file : NULL;
}

/* Is fd a datagram socket? (The LSM tier checks datagrams sent to an explicit address.) */
static __always_inline bool dgram_socket(u64 fd)
{
	struct file *f = current_fd_file(fd);
	struct socket *sock;

	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return false;
	sock = BPF_CORE_READ(f, private_data);
	return sock && BPF_CORE_READ(sock, type) == SOCK_DGRAM;
}

struct mmsg_ctx {
	u64 vec;
	u32 vlen;
	u32 skip_inet;
	u64 addr;
	u32 alen;
	int unreadable;
};

/* One message of sendmmsg(): the first with an address the policy covers ends the walk. */
static long mmsg_step(u64 i, void *ctx)
{
	struct mmsg_ctx *m = ctx;
	struct user_msghdr h = {};
	u16 family = 0;

	if (i >= m->vlen)
		return 1;
	if (bpf_probe_read_user(&h, sizeof(h), (void *)(m->vec + i * sizeof(struct mmsghdr))))
		return m->unreadable = 1, 1;
	if (!h.msg_name || h.msg_namelen <= 0)
		return 0;
	if (bpf_probe_read_user(&family, sizeof(family), h.msg_name))
		return m->unreadable = 1, 1;
	if (m->skip_inet && (family == AF_INET || family == AF_INET6))
		return 0;
	m->addr = (u64)h.msg_name;
	m->alen = h.msg_namelen;
	return 1;
}

/* The rule denying op (or, with wr, a write) on a path, or -1; *op becomes what matched. */
static __always_inline int path_rule(struct swp_rules *r, u32 *op, bool wr, char *buf, u32 start,
				     u32 anc_len)
{
	int rule = denied_by_anc(r, *op, buf, start, anc_len);

	if (rule < 0 && wr) {
		rule = denied_by_anc(r, SWP_OP_WRITE, buf, start, anc_len);
		if (rule >= 0)
			*op = SWP_OP_WRITE;
	}
	return rule;
}

/* Would a path rule for op (or a write) apply to some path? (For an unchecked path.) */
static __always_inline bool path_rules_for(struct swp_rules *r, u32 op, bool wr)
{
	return (r->path_ops & (1u << op)) || (wr && (r->path_ops & (1u << SWP_OP_WRITE)));
}

#define SWP_PACK(op, rule) ((int)(((op) & 0xff) << 8 | ((rule) & 0xff)))

/* FMODE_BACKING marks a file that is the layer file inside a struct backing_file (overlayfs,
 * FUSE passthrough). Its bit moved: 1 << 25 from 6.8, 1 << 24 once the fanotify pre-content
 * bits came (6.14, and stable kernels that took them: Debian's 6.12.117 has 1 << 24, measured).
 * Not in BTF, so either bit is taken as a hint and the backing_file is checked (below). */
#define FMODE_BACKING_BITS ((1u << 24) | (1u << 25))

/* The path the user opened a file by (the kernel's file_user_path()). A mapping's vm_file on
 * overlayfs is the layer's backing file, and since 6.8 its f_path is the layer's real path
 * (e.g. /upper/dir/f): the overlay path is backing_file.user_path. (6.5 to 6.7 kept the overlay
 * path in f_path and named the other real_path; before 6.5 there is no backing file, and
 * overlayfs gave its layer file the overlay path.) Where the hint bit means something else,
 * what follows struct file is not a path on a filesystem other than the file's own: f_path. */
static __always_inline u32 file_user_path(struct file *f, char *buf, u32 *trunc)
{
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct vfsmount *mnt = BPF_CORE_READ(f, f_path.mnt);

	if (bpf_core_field_exists(struct backing_file, user_path) &&
	    (BPF_CORE_READ(f, f_mode) & FMODE_BACKING_BITS)) {
		struct backing_file *bf = (void *)f;
		struct dentry *ud = BPF_CORE_READ(bf, user_path.dentry);
		struct vfsmount *um = BPF_CORE_READ(bf, user_path.mnt);
		struct super_block *sb = BPF_CORE_READ(um, mnt_sb);

		if (ud && sb && BPF_CORE_READ(ud, d_sb) == sb &&
		    sb != BPF_CORE_READ(f, f_inode, i_sb)) {
			d = ud;
			mnt = um;
		}
	}
	return dentry_path(d, mnt, buf, trunc);
}

/* The paths of a file call: the fd's (or mapping's) kernel-resolved path, or the user's path
 * joined to the root/cwd/dirfd and normalised; then the second path (rename, link).
 * Returns -1, or SWP_PACK(the op that matched, its rule); fills s->ev's target. A global
 * function: verified once, not once per path through the caller. */
__noinline int check_file_call(u64 regs_addr, struct swp_syscall *sc, struct swp_rules *r,
			       struct scratch *s, u32 op)
{
	struct pt_regs *regs = (struct pt_regs *)regs_addr;
	bool wr = false, unchecked = false, have = false;
	u32 start = 0, trunc = 0, anc = 0, op0 = op;
	char *buf = NULL;
	struct file *f = NULL;
	int rule, res;
	u16 fl;

	if (!sc || !r || !s)
		return -1;
	fl = sc->flags;

	if (fl & SWP_R_OPEN_WRITE) {
		wr = opens_for_write(regs, sc);
		if (op == SWP_OP_WRITE && !wr)
			return -1; /* an open for reading, and only writes are denied */
	} else if (fl & SWP_R_ALSO_WRITE) {
		wr = true;
	}
	if (op == SWP_OP_WRITE || !(r->reactive & (1u << SWP_OP_WRITE)))
		wr = false;
	if ((fl & SWP_R_MMAP) && (!(syscall_arg(regs, 2) & PROT_WRITE) ||
				  !(syscall_arg(regs, 3) & MAP_SHARED)))
		return -1; /* a private or read-only mapping writes nothing back */

	if (fl & SWP_R_MPROTECT) {
		f = mprotect_file(regs, &unchecked);
		if (!f && !unchecked)
			return -1;
	} else if (sc->fd_arg < 6 && !(fl & SWP_R_OPEN_WRITE) &&
		   (!(fl & SWP_R_EMPTY_PATH_FD) || (syscall_arg(regs, 4) & AT_EMPTY_PATH))) {
		f = current_fd_file(syscall_arg(regs, sc->fd_arg));
		have = true;
	} else if (sc->path_arg < 6) {
		s64 dirfd = (fl & SWP_R_AT) && sc->path_arg > 0 ?
			    (int)syscall_arg(regs, sc->path_arg - 1) : AT_FDCWD;

		have = true;
		res = resolve_user_path(s, 0, syscall_arg(regs, sc->path_arg), dirfd, 0);
		if (res > 0) {
			buf = s->buf;
			anc = (fl & SWP_R_ANCESTOR) ? res : 0;
		} else if (res == -UP_UNCHECKED) {
			unchecked = true;
		}
	}
	if (f) {
		start = file_user_path(f, s->buf, &trunc);
		buf = s->buf;
		have = true;
	}
	rule = path_rule(r, &op, wr, buf, start, anc);
	if (rule < 0 && unchecked && path_rules_for(r, op, wr)) {
		rule = SWP_RULE_UNCHECKED;
		set_target_none(s);
		s->ev.target_kind = SWP_TGT_PATH;
		bpf_probe_read_kernel_str(s->ev.target, SWP_PATH_MAX, s->raw);
		s->ev.trunc = 1;
		return SWP_PACK(op, rule);
	}
	if (rule < 0 && sc->path2_arg < 6) {
		u32 op2 = op0;
		s64 dirfd = (fl & SWP_R_AT) && sc->path2_arg > 0 ?
			    (int)syscall_arg(regs, sc->path2_arg - 1) : AT_FDCWD;

		res = resolve_user_path(s, 1, syscall_arg(regs, sc->path2_arg), dirfd, 0);
		if (res > 0) {
			rule = path_rule(r, &op2, wr, s->buf2, 0, 0);
			if (rule >= 0) {
				set_target_path(s, s->buf2, 0, 0);
				return SWP_PACK(op2, rule);
			}
		} else if (res == -UP_UNCHECKED && path_rules_for(r, op2, wr)) {
			set_target_none(s);
			s->ev.target_kind = SWP_TGT_PATH;
			bpf_probe_read_kernel_str(s->ev.target, SWP_PATH_MAX, s->raw);
			s->ev.trunc = 1;
			return SWP_PACK(op2, SWP_RULE_UNCHECKED);
		}
	}
	if (rule < 0)
		return -1;
	if (have && buf)
		set_target_path(s, buf, start, trunc);
	return SWP_PACK(op, rule);
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
	if (cfg.kill_untracked && cfg.mode == SW_TARGET_PID && overflowed) {
		u32 *m = untracked_mark();

		if (m) {
			if (!*m) {
				*m = 1;
				count_one(&counts, struct swp_counts, killed_untracked);
			}
			if (!cfg.audit_only)
				bpf_send_signal(SIGKILL);
			return 0;
		}
	}
	/* Every task on the machine comes through here: first the syscall number (an inlined
	 * array lookup), and only for a syscall the policy covers, the target check. */
	nr = ctx->args[1];
	if (nr >= SW_MAX_SYSCALLS || !(sc = bpf_map_lookup_elem(&reactive, &nr)) ||
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
		u64 uaddr = syscall_arg(regs, 1), alen = syscall_arg(regs, 2);
		bool skip_inet = sc->flags & SWP_R_SKIP_INET_ADDR;
		u16 family = 0;

		if (sc->flags & (SWP_R_SENDTO | SWP_R_SENDMSG | SWP_R_SENDMMSG)) {
			/* A datagram to an explicit address: a connect in all but name. Without
			 * an address it goes to the peer, checked at connect(). */
			if (!dgram_socket(syscall_arg(regs, 0)))
				return 0;
			if (sc->flags & SWP_R_SENDTO) {
				uaddr = syscall_arg(regs, 4);
				alen = syscall_arg(regs, 5);
			} else if (sc->flags & SWP_R_SENDMSG) {
				struct user_msghdr h = {};

				if (bpf_probe_read_user(&h, sizeof(h), (void *)uaddr)) {
					h.msg_name = (void *)1; /* unreadable: fail closed */
					h.msg_namelen = 0;
				}
				uaddr = (u64)h.msg_name;
				alen = h.msg_namelen;
			} else {
				struct mmsg_ctx m = { .vec = uaddr, .vlen = syscall_arg(regs, 2),
						      .skip_inet = skip_inet };

				if (m.vlen > SWP_SENDMMSG_MAX)
					m.vlen = SWP_SENDMMSG_MAX;
				bpf_loop(SWP_SENDMMSG_MAX, mmsg_step, &m, 0);
				uaddr = m.unreadable ? 1 : m.addr;
				alen = m.alen;
			}
			if (!uaddr)
				return 0;
		}
		/* An unreadable address reads as family 0: not skipped, so denied. */
		bpf_probe_read_user(&family, sizeof(family), (void *)uaddr);
		if (skip_inet && (family == AF_INET || family == AF_INET6))
			return 0;
		set_target_addr(s, (void *)uaddr, alen, true);
		rule = denied_by(r, op, NULL, 0);
	} else {
		int packed = check_file_call((u64)regs, sc, r, s, op);

		if (packed < 0)
			return 0;
		op = (packed >> 8) & 0xff;
		rule = packed & 0xff;
	}
	if (rule < 0)
		return 0;
	report(s, op, SWP_TIER_REACTIVE, rule, nr);
	verdict(SWP_TIER_REACTIVE);
	return 0;
}

/* ------------------------------------------------------------------ reactive tier: io_uring */

/* io_uring operations never pass sys_enter: the reactive tier sees their submission instead
 * (tp_btf/io_uring_submit_req from 6.4, io_uring_submit_sqe on 6.1), after the kernel's prep
 * copied the paths (struct filename): the path checked is the one the operation will use.
 * A blocked submission SIGKILLs the ring's owner (an SQPOLL or io-wq thread belongs to it);
 * like every reactive denial, the operation may already be under way ("killed after"). */
#define SWP_IORING_OP_READV 1
#define SWP_IORING_OP_WRITEV 2
#define SWP_IORING_OP_WRITE_FIXED 5
#define SWP_IORING_OP_CONNECT 16
#define SWP_IORING_OP_OPENAT 18
#define SWP_IORING_OP_WRITE 23
#define SWP_IORING_OP_OPENAT2 28
#define SWP_IORING_OP_RENAMEAT 35
#define SWP_IORING_OP_UNLINKAT 36
#define SWP_IORING_OP_MKDIRAT 37
#define SWP_IORING_OP_WRITEV_FIXED 61
#define SWP_REQ_F_FIXED_FILE 1ULL

/* The denial for one submitted request, or -1: SWP_PACK(op, rule), s->ev's target filled.
 * A global function: verified once for both submission programs. */
__noinline int check_uring_req(u64 req_addr, struct swp_rules *r, struct scratch *s)
{
	struct io_kiocb *req = (struct io_kiocb *)req_addr;
	struct filename *fn = NULL, *fn2 = NULL;
	s64 dfd = AT_FDCWD, dfd2 = AT_FDCWD;
	u32 op, opcode;
	bool wr = false;
	int rule, res;

	if (!r || !s)
		return -1;
	opcode = BPF_CORE_READ(req, opcode);
	switch (opcode) {
	case SWP_IORING_OP_OPENAT:
	case SWP_IORING_OP_OPENAT2:
		if (!bpf_core_type_exists(struct io_open))
			return -1;
		op = SWP_OP_FILE_OPEN;
		fn = BPF_CORE_READ((struct io_open *)req, filename);
		dfd = BPF_CORE_READ((struct io_open *)req, dfd);
		wr = BPF_CORE_READ((struct io_open *)req, how.flags) &
		     (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC);
		break;
	case SWP_IORING_OP_UNLINKAT:
		if (!bpf_core_type_exists(struct io_unlink))
			return -1;
		op = BPF_CORE_READ((struct io_unlink *)req, flags) & AT_REMOVEDIR ? SWP_OP_RMDIR
										    : SWP_OP_UNLINK;
		fn = BPF_CORE_READ((struct io_unlink *)req, filename);
		dfd = BPF_CORE_READ((struct io_unlink *)req, dfd);
		break;
	case SWP_IORING_OP_MKDIRAT:
		if (!bpf_core_type_exists(struct io_mkdir))
			return -1;
		op = SWP_OP_MKDIR;
		fn = BPF_CORE_READ((struct io_mkdir *)req, filename);
		dfd = BPF_CORE_READ((struct io_mkdir *)req, dfd);
		break;
	case SWP_IORING_OP_RENAMEAT:
		if (!bpf_core_type_exists(struct io_rename))
			return -1;
		op = SWP_OP_RENAME;
		wr = true; /* as rename(): its paths are writes too when write is held */
		fn = BPF_CORE_READ((struct io_rename *)req, oldpath);
		dfd = BPF_CORE_READ((struct io_rename *)req, old_dfd);
		fn2 = BPF_CORE_READ((struct io_rename *)req, newpath);
		dfd2 = BPF_CORE_READ((struct io_rename *)req, new_dfd);
		break;
	case SWP_IORING_OP_CONNECT: {
		struct sockaddr *ua;
		u16 family = 0;

		if (!bpf_core_type_exists(struct io_connect) ||
		    !(r->reactive & (1u << SWP_OP_CONNECT)))
			return -1;
		ua = BPF_CORE_READ((struct io_connect *)req, addr);
		bpf_probe_read_user(&family, sizeof(family), ua);
		if ((family == AF_INET || family == AF_INET6) &&
		    r->tier[SWP_OP_CONNECT] == SWP_TIER_CGROUP)
			return -1; /* the cgroup tier's connect4/6 hooks see io_uring's connects */
		set_target_addr(s, ua, BPF_CORE_READ((struct io_connect *)req, addr_len), true);
		rule = denied_by(r, SWP_OP_CONNECT, NULL, 0);
		return rule < 0 ? -1 : SWP_PACK(SWP_OP_CONNECT, rule);
	}
	case SWP_IORING_OP_WRITE:
	case SWP_IORING_OP_WRITEV:
	case SWP_IORING_OP_WRITE_FIXED:
	case SWP_IORING_OP_WRITEV_FIXED: {
		struct file *f;
		u32 start, trunc = 0;

		if (!(r->reactive & (1u << SWP_OP_WRITE)) ||
		    (BPF_CORE_READ(req, flags) & SWP_REQ_F_FIXED_FILE))
			return -1; /* a registered file: opened (and checked) earlier */
		f = current_fd_file(BPF_CORE_READ(req, cqe.fd));
		if (!f)
			return -1;
		start = file_user_path(f, s->buf, &trunc);
		rule = denied_by(r, SWP_OP_WRITE, s->buf, start);
		if (rule < 0)
			return -1;
		set_target_path(s, s->buf, start, trunc);
		return SWP_PACK(SWP_OP_WRITE, rule);
	}
	default:
		return -1;
	}
	if (!(r->reactive & (1u << SWP_OP_WRITE)) || op == SWP_OP_WRITE)
		wr = false;
	if (!(r->reactive & (1u << op)) && !wr)
		return -1;
	if (!(r->reactive & (1u << op)) && op == SWP_OP_FILE_OPEN)
		op = SWP_OP_WRITE; /* only writes are held: an open for writing is one */
	res = fn ? resolve_user_path(s, 0, (u64)BPF_CORE_READ(fn, name), dfd, 1) : -UP_NONE;
	if (res > 0) {
		rule = path_rule(r, &op, wr, s->buf, 0, op == SWP_OP_RENAME ? res : 0);
		if (rule >= 0) {
			set_target_path(s, s->buf, 0, 0);
			return SWP_PACK(op, rule);
		}
	} else if (res == -UP_UNCHECKED && path_rules_for(r, op, wr)) {
		set_target_none(s);
		s->ev.target_kind = SWP_TGT_PATH;
		bpf_probe_read_kernel_str(s->ev.target, SWP_PATH_MAX, s->raw);
		s->ev.trunc = 1;
		return SWP_PACK(op, SWP_RULE_UNCHECKED);
	}
	if (fn2) {
		u32 op2 = SWP_OP_RENAME;

		res = resolve_user_path(s, 1, (u64)BPF_CORE_READ(fn2, name), dfd2, 1);
		if (res > 0) {
			rule = path_rule(r, &op2, wr, s->buf2, 0, 0);
			if (rule >= 0) {
				set_target_path(s, s->buf2, 0, 0);
				return SWP_PACK(op2, rule);
			}
		}
	}
	/* a plain 'block' rule with no path (block rename) */
	rule = denied_by(r, op, NULL, 0);
	if (rule >= 0) {
		set_target_none(s);
		return SWP_PACK(op, rule);
	}
	return -1;
}

static __always_inline int uring_reactive(u64 req_addr)
{
	struct swp_rules *r;
	struct scratch *s;
	int packed;
	u32 opcode;

	if (!targeted() || !(r = get_rules()) || !(s = get_scratch()))
		return 0;
	set_target_none(s);
	packed = check_uring_req(req_addr, r, s);
	if (packed < 0)
		return 0;
	opcode = BPF_CORE_READ((struct io_kiocb *)req_addr, opcode);
	{
		/* the ring's owner's record, not its SQPOLL kernel thread's */
		struct task_struct *owner = uring_owner_task(bpf_get_current_task_btf());
		u64 id = bpf_get_current_pid_tgid();
		bool sqpoll;

		fill_hdr(&s->ev.hdr, SWP_EV_DENIAL, id);
		s->ev.hdr.tid = uring_owner_tid((struct io_kiocb *)req_addr, (u32)id, &sqpoll);
		BPF_CORE_READ_STR_INTO(&s->ev.hdr.comm, owner, comm);
		s->ev.hdr.ppid = BPF_CORE_READ(owner, real_parent, tgid);
	}
	report_as(s, (packed >> 8) & 0xff, SWP_TIER_REACTIVE, packed & 0xff,
		  SWP_NR_URING | opcode, true);
	verdict(SWP_TIER_REACTIVE);
	return 0;
}

/* The request's address as a number (a global function takes no kernel pointer). */
static __always_inline u64 swp_req_addr(u64 *ctx)
{
	u64 a = 0;

	bpf_probe_read_kernel(&a, sizeof(a), &ctx[0]);
	return a;
}

SEC("tp_btf/io_uring_submit_req")
int swp_uring_submit_req(u64 *ctx)
{
	return uring_reactive(swp_req_addr(ctx));
}

SEC("tp_btf/io_uring_submit_sqe")
int swp_uring_submit_sqe(u64 *ctx)
{
	return uring_reactive(swp_req_addr(ctx));
}

/* ------------------------------------------------------------------ LSM / fmod_ret tiers */

/* A kernel pointer as a number: a global function takes no kernel pointer. */
static __always_inline u64 swp_kaddr(const void *p)
{
	u64 a = 0;

	bpf_probe_read_kernel(&a, sizeof(a), &p);
	return a;
}

/* The hooks' path check is two global functions (verified once per program, from one state).
 * Inlined, the verifier walked the path walk's and the rule match's bpf_loop callbacks again for
 * every path through the hook that reached them: on Debian's 6.1 that was 97,000-227,000
 * instructions and 4-10 s (under QEMU TCG) per program (bench/README.md). */

#define SWP_WALK_TRUNC (1u << 16)

/* The path of the file at f_addr (the path the user opened it by) or, with f_addr 0, of the
 * entry at d_addr on the mount at mnt_addr, walked into s->buf; returns the index of its first
 * byte, | SWP_WALK_TRUNC when it did not fit. */
__noinline u32 hook_path(struct scratch *s, u64 f_addr, u64 mnt_addr, u64 d_addr)
{
	u32 start, trunc = 0;

	if (!s)
		return SWP_WALK_TRUNC;
	start = f_addr ? file_user_path((struct file *)f_addr, s->buf, &trunc)
		       : dentry_path((struct dentry *)d_addr, (struct vfsmount *)mnt_addr, s->buf,
				     &trunc);
	return (start & SWP_PATH_MASK) | (trunc ? SWP_WALK_TRUNC : 0);
}

/* denied_by_anc() on the path at s->buf[start]. */
__noinline int hook_path_rule(struct scratch *s, struct swp_rules *r, u32 op, u32 start,
			      u32 anc_len)
{
	if (!s || !r)
		return -1;
	return denied_by_anc(r, op & (SWP_OPS - 1), s->buf, start & SWP_PATH_MASK, anc_len);
}

/* op on a path: with of_file, the path the user opened the file f by; else the path of the
 * entry d on the mount mnt (path_* hooks). With ancestor, also when the entry is a directory
 * above a rule's path (renaming it would move that path). 0, or -EPERM (after reporting). */
static __always_inline int check_path(bool of_file, struct file *f, struct vfsmount *mnt,
				      struct dentry *d, u32 op, u8 tier, bool ancestor)
{
	struct swp_rules *r;
	struct scratch *s;
	u32 start, trunc, walk;
	int rule;

	if (!path_rules_apply(op, &r, &s))
		return 0;
	walk = of_file ? hook_path(s, swp_kaddr(f), 0, 0)
		       : hook_path(s, 0, swp_kaddr(mnt), swp_kaddr(d));
	start = walk & SWP_PATH_MASK;
	trunc = !!(walk & SWP_WALK_TRUNC);
	rule = hook_path_rule(s, r, op, start,
			      ancestor && !trunc ? SWP_PATH_MAX - 1 - start : 0);
	if (rule < 0)
		return 0;
	set_target_path(s, s->buf, start, trunc);
	return deny(s, op, tier, rule);
}

static __always_inline int check_file(struct file *f, u32 op, u8 tier)
{
	return check_path(true, f, NULL, NULL, op, tier, false);
}

static __always_inline int check_entry_anc(struct vfsmount *mnt, struct dentry *d, u32 op, u8 tier,
					   bool ancestor)
{
	return check_path(false, NULL, mnt, d, op, tier, ancestor);
}

static __always_inline int check_entry(struct vfsmount *mnt, struct dentry *d, u32 op, u8 tier)
{
	return check_path(false, NULL, mnt, d, op, tier, false);
}

static __always_inline int check_plain(u32 op, u8 tier)
{
	struct scratch *s;
	int rule = denying_rule(op, false, &s);

	if (rule < 0)
		return 0;
	set_target_none(s);
	return deny(s, op, tier, rule);
}

static __always_inline int check_sock_addr(struct sockaddr *addr, int len, u32 op, u8 tier)
{
	struct scratch *s;
	int rule = denying_rule(op, false, &s);

	if (rule < 0)
		return 0;
	set_target_addr(s, addr, len, false);
	return deny(s, op, tier, rule);
}

static __always_inline int do_socket_create(int family, int type, int kern, u8 tier)
{
	struct scratch *s;
	int rule;

	if (kern)
		return 0;
	rule = denying_rule(SWP_OP_SOCKET, false, &s);
	if (rule < 0)
		return 0;
	set_target_none(s);
	s->ev.target_kind = SWP_TGT_SOCKET;
	s->ev.aux = family;
	s->ev.aux2 = type;
	return deny(s, SWP_OP_SOCKET, tier, rule);
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
	struct scratch *s;
	int rule;

	if (!sig)
		return 0; /* probing */
	if (BPF_CORE_READ(p, tgid) == bpf_get_current_pid_tgid() >> 32)
		return 0; /* itself */
	rule = denying_rule(SWP_OP_KILL, false, &s);
	if (rule < 0)
		return 0;
	set_target_none(s);
	s->ev.target_kind = SWP_TGT_PID;
	s->ev.aux = BPF_CORE_READ(p, tgid);
	s->ev.aux2 = sig;
	return deny(s, SWP_OP_KILL, tier, rule);
}

/* A rename is a rename of both names, and a write to both: it replaces or adds an entry
 * at the new name (rename-over: the protected file's content is replaced) and removes one at
 * the old. Renaming a directory above a protected path moves the path out from under its rule. */
static __always_inline int do_rename(const struct path *old_dir, struct dentry *old_dentry,
				     const struct path *new_dir, struct dentry *new_dentry, u8 tier)
{
	struct vfsmount *om = BPF_CORE_READ(old_dir, mnt), *nm = BPF_CORE_READ(new_dir, mnt);
	int ret = check_entry_anc(om, old_dentry, SWP_OP_RENAME, tier, true);

	if (!ret)
		ret = check_entry(nm, new_dentry, SWP_OP_RENAME, tier);
	if (!ret)
		ret = check_entry_anc(om, old_dentry, SWP_OP_WRITE, tier, true);
	if (!ret)
		ret = check_entry(nm, new_dentry, SWP_OP_WRITE, tier);
	return ret;
}

/* A shared writable mapping writes the file with no further check (no file_permission). */
static __always_inline int do_mmap_file(struct file *f, unsigned long prot, unsigned long flags,
					u8 tier)
{
	if (!f || !(prot & PROT_WRITE) || !(flags & MAP_SHARED))
		return 0;
	return check_file(f, SWP_OP_WRITE, tier);
}

/* mprotect(PROT_WRITE) on a shared mapping of a file made read-only. */
static __always_inline int do_file_mprotect(struct vm_area_struct *vma, unsigned long prot,
					    u8 tier)
{
	struct file *f = BPF_CORE_READ(vma, vm_file);
	u64 fl = BPF_CORE_READ(vma, vm_flags);

	if (!f || !(prot & PROT_WRITE) || !(fl & VM_MAYSHARE))
		return 0;
	return check_file(f, SWP_OP_WRITE, tier);
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

/* security_mmap_file(file, prot, flags); the LSM hook also gets reqprot first. */
SEC("lsm/mmap_file")
int BPF_PROG(swp_lsm_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags)
{
	return do_mmap_file(file, prot, flags, SWP_TIER_LSM);
}

SEC("fmod_ret/security_mmap_file")
int BPF_PROG(swp_fmr_mmap_file, struct file *file, unsigned long prot, unsigned long flags)
{
	return do_mmap_file(file, prot, flags, SWP_TIER_FMOD_RET);
}

SWP_HOOK(file_mprotect, do_file_mprotect(vma, prot, T), struct vm_area_struct *vma,
	 unsigned long reqprot, unsigned long prot)
