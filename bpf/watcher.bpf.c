// SPDX-License-Identifier: GPL-2.0
/* swatch tracer: raw_tp sys_enter/sys_exit correlated per thread, plus the
 * sched fork/exec/exit tracepoints for the process tree and exit codes. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "watcher.h"
#include "defs.bpf.h"
#include "maps.bpf.h"
#include "event.bpf.h"
#include "task.bpf.h"
#include "syscall_args.bpf.h"
#include "targets.bpf.h"
#include "vfs_path.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define S_IFREG 0100000
#define EINPROGRESS 115
#define SW_PATH_MASK (SW_PATH_MAX - 1)
_Static_assert(SW_PATH_MAX == VFS_PATH_MAX, "event paths and walked paths differ in size");

/* Set by the loader before load; the verifier prunes the modes not chosen. */
const volatile struct sw_config cfg SEC(".rodata.cfg") = {};

struct enter_name {
	u16 len;
	u8 kind;
	u8 trunc;
	char name[SW_PATH_MAX];
};

struct scratch {
	union {
		struct sw_syscall_event sc;
		struct sw_exec_event exec;
		struct sw_pid_stat sum; /* an exiting process's counts, summed over CPUs */
	};
	char pathbuf[2 * SW_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* pid_filter, pid_range, pending, state: shared with bpf/tls.bpf.c. */
#include "membership.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SW_MAX_SYSCALLS);
	__type(key, u32);
	__type(value, struct sw_syscall_info);
} syscall_info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct enter_name);
} enter_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SW_MAX_SYSCALLS);
	__type(key, u32);
	__type(value, struct sw_stat);
} stats SEC(".maps");

/* Per-process counts. A live process has a slot in pid_stats, a per-CPU array (plain adds on
 * this CPU's copy; the slot number is kept in each thread's storage, so sys_exit indexes an
 * array instead of looking up a hash). pid_stats is preallocated: slots x sizeof x CPUs, so
 * the loader sizes it from its own bound (--stats-slots), not from --max-pids. When the last
 * thread exits, the copies are summed into pid_done and the slot is given back (free_slots).
 * A process that finds no free slot is counted in pid_done as it runs (atomic adds). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);  /* sized by the loader */
	__type(key, u32);
	__type(value, struct sw_pid_stat);
} pid_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);  /* sized by the loader: the slots */
	__type(key, u32);
	__type(value, struct sw_pid_slot);
} pid_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 1);  /* sized by the loader: the slots */
	__type(value, u64);      /* slot | next generation << 32 */
} free_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sw_pid_alloc);
} pid_alloc SEC(".maps");

/* Exited processes' counts (and those of processes that ran without a slot), memory only for
 * live entries; sized by the loader (--max-pids). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct sw_pid_key);
	__type(value, struct sw_pid_stat);
} pid_done SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sw_counters);
} counters SEC(".maps");

/* swatch detect's evidence (docs/detect.md): the remote endpoints the target connected to and
 * the regular files it wrote, keyed by session so `detect --all` can split them per tree.
 * Bounded; an entry that finds no room is counted in counters.evidence_full. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct sw_endpoint_key);
	__type(value, struct sw_endpoint_stat);
} endpoints SEC(".maps");

/* detect's lease and the DNS ring's count (SW_DETECT_*, watcher.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SW_DETECT_KEYS);
	__type(key, u32);
	__type(value, u64);
} detect SEC(".maps");

/* detect: each process's fd classes (struct sw_fd_classes), one entry per pid_stats slot,
 * shared by the CPUs (what one learns, all use). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);  /* sized by the loader: the slots */
	__type(key, u32);
	__type(value, struct sw_fd_classes);
} fd_classes SEC(".maps");

_Static_assert(SW_FDC_CACHED == 32 * SW_FDC_WORDS, "2 bits an fd in u64 words");

/* The DNS answers traced processes received while detect ran, newest over oldest. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SW_DNS_SLOTS);
	__type(key, u32);
	__type(value, struct sw_dns_answer);
} dns_answers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2048);
	__type(key, struct sw_file_key);
	__type(value, struct sw_file_stat);
} files_written SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sw_meta);
} meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* A compare against the range of traced tgids (array lookups are inlined: no call). */
static __always_inline bool in_pid_range(u32 tgid)
{
	struct sw_pid_range *r = bpf_map_lookup_elem(&pid_range, &zero);

	return r && tgid >= r->lo && tgid <= r->hi;
}

/* Widen the range to take in a new child; lock-free, retried if another CPU raced us. */
static __always_inline void widen_pid_range(u32 tgid)
{
	struct sw_pid_range *r = bpf_map_lookup_elem(&pid_range, &zero);

	if (!r)
		return;
	for (int i = 0; i < 64; i++) {
		u32 lo = r->lo;

		if (tgid >= lo || __sync_val_compare_and_swap(&r->lo, lo, tgid) == lo)
			break;
	}
	for (int i = 0; i < 64; i++) {
		u32 hi = r->hi;

		if (tgid <= hi || __sync_val_compare_and_swap(&r->hi, hi, tgid) == hi)
			break;
	}
}

/* The non-PID modes' test of the current task (uid, cgroup, comm; true for system-wide). */
static __always_inline bool mode_matches(void)
{
	switch (cfg.mode) {
	case SW_TARGET_UID:
		if ((u32)bpf_get_current_uid_gid() != cfg.target_uid)
			return false;
		break;
	case SW_TARGET_CGROUP:
		/* The container's cgroup or any cgroup below it. */
		if (!in_cgroup_tree(cfg.target_cgroup, cfg.target_cgroup_level))
			return false;
		break;
	case SW_TARGET_COMM: {
		char comm[SW_TASK_COMM_LEN];

		bpf_get_current_comm(comm, sizeof(comm));
		for (int i = 0; i < SW_TASK_COMM_LEN; i++) {
			if (comm[i] != cfg.target_comm[i])
				return false;
			if (!comm[i])
				break;
		}
		break;
	}
	default:
		break;
	}
	return true;
}

/* Called first by the sched programs: is the current task one we trace? In SW_TARGET_PID
 * mode a thread's mark says so (set at fork or at its first syscall), else its tgid in
 * pid_filter; in every mode, swatch's own processes are marked excluded. */
static __always_inline bool traced(u64 pid_tgid)
{
	u32 tgid = pid_tgid >> 32;
	struct sw_task *p;

	if (cfg.mode == SW_TARGET_PID) {
		if (!in_pid_range(tgid))
			return false;
		p = task_mark(&pending, bpf_get_current_task_btf());
		if (p)
			return !p->excluded;
		return tgid_listed(&pid_filter, tgid);
	}
	if (!mode_matches())
		return false;
	p = task_mark(&pending, bpf_get_current_task_btf());
	return !p || !p->excluded;
}

/* Does a detect run hold the lease (SW_DETECT_LEASE, watcher.h)? */
static __always_inline bool detecting(u64 now)
{
	u32 key = SW_DETECT_LEASE;
	u64 *until = bpf_map_lookup_elem(&detect, &key);

	return until && now < *until;
}

/* A call whose detect part runs only under the lease: bytes in/out with the fd in argument 0,
 * a receive that may bring a DNS answer, a call that frees fds. */
/* detecting() for --no-latency's sys_exit, which has no clock read to share: the clock is read
 * only while a lease is set (0: none, or ended). detect's userspace sets 0 when it lets go; a
 * lease found run out (a detect killed outright) is set to 0 here, once (unless renewed
 * meanwhile), so the calls after it read no clock either. *now: the time, when read. */
static __always_inline bool lease_held(u64 *now)
{
	u32 key = SW_DETECT_LEASE;
	u64 *until = bpf_map_lookup_elem(&detect, &key);
	u64 u;

	if (!until)
		return false;
	u = *until;
	if (!u)
		return false;
	*now = bpf_ktime_get_ns();
	if (*now < u)
		return true;
	__sync_val_compare_and_swap(until, u, 0);
	return false;
}

static __always_inline bool leased_call(struct sw_syscall_info *info)
{
	return ((info->flags & (SW_SC_BYTES_IN | SW_SC_BYTES_OUT)) && info->fd_arg == 0) ||
	       (info->detect & (SW_DT_DNS | SW_DT_FD_CLOSE | SW_DT_FD_RESET));
}

static __always_inline bool streaming(void)
{
	struct sw_state *st = bpf_map_lookup_elem(&state, &zero);
	return st && st->streaming;
}

/* When the consumer was last woken (kernel ns): see output(). Written by every CPU without a
 * lock; a lost update only costs one wakeup more or less. */
u64 sw_last_wakeup_ns = 0;

/* Every record goes through here, so every failure is counted.
 *
 * Wakeups: a wakeup is an irq_work (a self-IPI, a VM exit under a hypervisor) on the producing
 * CPU, so it is paid per record sent with BPF_RB_FORCE_WAKEUP. A record wakes the consumer
 * only (a) when the ring's producer position crosses a multiple of cfg.wakeup_bytes (a power
 * of two: a busy stream is read in batches of about that size, whatever the consumer does
 * meanwhile), or (b) when the last wakeup is SW_WAKEUP_GAP_NS old (the first record after a
 * quiet spell goes out at once: `swatch run`'s first event). Everything else is sent with
 * BPF_RB_NO_WAKEUP and read at the next wakeup or the consumer's poll timeout (LIVE_MS). Waking
 * on every record once wakeup_bytes were queued (the rule before) cost one IPI per record for
 * as long as the consumer was busy formatting the previous batch. */
static __always_inline void output(void *rec, u32 size, u32 type)
{
	struct sw_counters *c = bpf_map_lookup_elem(&counters, &zero);
	u64 now = ((struct sw_event_hdr *)rec)->ktime_ns;
	u64 prod = bpf_ringbuf_query(&events, BPF_RB_PROD_POS);
	u64 flags = BPF_RB_NO_WAKEUP;
	long err;

	if (type >= SW_EV_TYPES)
		return;
	/* + 8: the ring's own record header (BPF_RINGBUF_HDR_SZ) */
	if (((prod ^ (prod + size + 8)) >= cfg.wakeup_bytes) ||
	    now - sw_last_wakeup_ns >= SW_WAKEUP_GAP_NS) {
		flags = BPF_RB_FORCE_WAKEUP;
		sw_last_wakeup_ns = now;
	}
	err = bpf_ringbuf_output(&events, rec, size, flags);
	if (!c)
		return;
	__sync_fetch_and_add(&c->emitted[type], 1);
	if (err)
		__sync_fetch_and_add(&c->dropped[type], 1);
	if (flags == BPF_RB_FORCE_WAKEUP)
		__sync_fetch_and_add(&c->wakeups, 1);
}

/* Tell the verifier what the code already guarantees (v <= max). */
static __always_inline u64 bounded(u64 v, u64 max)
{
	barrier_var(v);
	if (v > max)
		v = max;
	barrier_var(v);
	return v;
}

static __always_inline u32 log2_u64(u64 v)
{
	u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

static __always_inline bool name_is(const char *n, const char *want, int len)
{
	for (int i = 0; i < len; i++)
		if (n[i] != want[i])
			return false;
	return true;
}

/* Name the fd: its path, or what kind of socket / pipe / anon inode it is.
 * Writes the NUL-terminated name to dst (room for SW_PATH_MAX bytes) and
 * returns its length including the NUL, 0 if there is none, -1 if the fd is
 * runtime noise ([eventfd], [timerfd], [eventpoll], [signalfd]). */
static __always_inline int fd_name(u64 fd, char *dst, char *buf, u8 *kind, u32 *trunc)
{
	struct file *f = current_fd_file_btf(fd);
	struct vfs_dentry_head dh;
	struct path path = {};
	u16 mode;

	if (!f) {
		*kind = SW_FD_BAD;
		return 0;
	}
	mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) == S_IFSOCK) {
		struct socket *sock = BPF_CORE_READ(f, private_data);
		u16 family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
		short type = BPF_CORE_READ(sock, type);

		if (family == AF_UNIX)
			*kind = SW_FD_UNIX;
		else if ((family == AF_INET || family == AF_INET6) && type == SOCK_STREAM)
			*kind = SW_FD_TCP;
		else if ((family == AF_INET || family == AF_INET6) && type == SOCK_DGRAM)
			*kind = SW_FD_UDP;
		else
			*kind = SW_FD_SOCKET;
		return 0;
	}
	/* the file's path, then its dentry's parent and name: two reads (vfs_path.bpf.h) */
	BPF_CORE_READ_INTO(&path, f, f_path);
	vfs_dentry_head(path.dentry, &dh);
	if ((mode & S_IFMT) == S_IFIFO && dh.parent == path.dentry) {
		*kind = SW_FD_PIPE;
		return 0;
	}
	if (dh.parent == path.dentry) {
		/* Root of a pseudo filesystem: anon inodes are named "[kind]". */
		char head[12] = {};

		bpf_probe_read_kernel(head, sizeof(head) - 1, dh.name);
		if (head[0] == '[') {
			if (name_is(head, "[eventfd", 8) || name_is(head, "[timerfd", 8) ||
			    name_is(head, "[eventpoll", 10) || name_is(head, "[signalfd", 9))
				return -1;
			*kind = SW_FD_ANON;
			return bpf_probe_read_kernel_str(dst, SW_PATH_MAX, dh.name);
		}
	}
	{
		u64 start = dentry_path(path.dentry, path.mnt, buf, trunc) & SW_PATH_MASK;
		u64 len = SW_PATH_MAX - start;

		*kind = SW_FD_FILE;
		barrier_var(len);
		len &= 2 * SW_PATH_MAX - 1;
		if (len > SW_PATH_MAX)
			len = SW_PATH_MAX;
		bpf_probe_read_kernel(dst, len, &buf[start]);
		return len;
	}
}

/* tp_btf, not raw_tp: the same tracepoint and dispatch, but regs is a typed kernel pointer, so
 * the arguments are plain loads from it instead of one bpf_probe_read_kernel() call each. */
/* The current task's ids as bpf_get_current_pid_tgid() gives them (tgid << 32 | pid): two
 * plain loads from the typed current task, which the syscall programs need anyway (for its
 * storage), instead of a helper call of their own. */
static __always_inline u64 task_ids(struct task_struct *task)
{
	return (u64)(u32)task->tgid << 32 | (u32)task->pid;
}

/* The filter at a syscall's start (sw_sys_enter; sw_sys_exit with --no-latency): the current
 * thread's storage when it is traced (made at its first syscall), else NULL. */
static __always_inline struct sw_task *syscall_task(struct task_struct *task, u32 tgid)
{
	struct sw_task *p = NULL;

	if (cfg.mode == SW_TARGET_PID) {
		/* Bystanders: two compares. A thread's storage exists once it is known traced
		 * (marked at fork, or found in pid_filter at its first syscall) or excluded:
		 * after that, no hash lookup. */
		if (!in_pid_range(tgid))
			return NULL;
		p = task_mark(&pending, task);
		if (!p && !tgid_listed(&pid_filter, tgid))
			return NULL;
	} else if (!mode_matches()) {
		return NULL;
	}
	if (!p)
		p = bpf_task_storage_get(&pending, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p || p->excluded)
		return NULL;
	return p;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sw_sys_enter, struct pt_regs *regs, long syscall_nr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u64 id = task_ids(task);
	u32 tid = (u32)id;
	struct sw_task *p = syscall_task(task, id >> 32);
	u32 nr = syscall_nr;
	u64 now;

	if (!p)
		return 0;
	p->nr = nr;
	p->args_ok = 0;
	p->detect_args = 0;
	now = bpf_ktime_get_ns();
	if (nr < SW_MAX_SYSCALLS) {
		struct sw_syscall_info *info = bpf_map_lookup_elem(&syscall_info, &nr);

		/* Arguments matter only for events: skip reading them when nobody streams. */
		if (info && (info->flags & SW_SC_ENABLED) && streaming()) {
			syscall_args_btf(regs, p->args);
			p->args_ok = 1;
			/* close: the name is gone by sys_exit, so take it now. */
			if ((info->flags & SW_SC_FD_AT_ENTER) && info->fd_arg < 6) {
				struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
				struct enter_name *en;
				struct enter_name blank = {};
				u32 trunc = 0;
				int n;

				if (s && !bpf_map_update_elem(&enter_names, &tid, &blank, BPF_ANY) &&
				    (en = bpf_map_lookup_elem(&enter_names, &tid))) {
					n = fd_name(p->args[info->fd_arg & 7], en->name, s->pathbuf,
						    &en->kind, &trunc);
					en->len = n < 0 ? 0xffff : n;
					en->trunc = trunc;
				}
			}
		}
		/* detect's counters need connect's address even when nobody streams, and while
		 * a detect run holds the lease the fd of a bytes-in/out call (file bytes), the
		 * buffer of a receive (DNS answers) and the fd a close frees (the fd classes): at
		 * most three plain loads, only for them. */
		if (info && !p->args_ok) {
			if (info->detect & SW_DT_CONNECT) {
				p->args[0] = PT_REGS_PARM1_SYSCALL(regs);
				p->args[1] = PT_REGS_PARM2_SYSCALL(regs);
				p->args[2] = PT_REGS_PARM3_SYSCALL(regs);
				if (detecting(now))
					p->detect_args = 1;
			} else if (leased_call(info) && detecting(now)) {
				p->args[0] = PT_REGS_PARM1_SYSCALL(regs);
				p->args[1] = PT_REGS_PARM2_SYSCALL(regs);
				if (info->detect & SW_DT_DNS_FROM)
					p->args[4] = PT_REGS_PARM5_SYSCALL(regs);
				p->detect_args = 1;
			}
		} else if (info && leased_call(info) && detecting(now)) {
			p->detect_args = 1; /* streaming read them all */
		}
	}
	p->ts = now;
	return 0;
}

/* One call into a statistics slot: struct sw_stat or struct sw_pid_stat (the same fields). */
#define add_call(slot, dur, err, in, out)                                 \
	do {                                                              \
		(slot)->count += 1;                                       \
		(slot)->total_ns += (dur);                                \
		if (err)                                                  \
			(slot)->errors += 1;                              \
		if (in)                                                   \
			(slot)->bytes_in += (in);                         \
		if (out)                                                  \
			(slot)->bytes_out += (out);                       \
	} while (0)

/* Name a process's counts: its name, cgroup, session and parent (the current task's). */
static __always_inline void name_pid_stat(struct sw_pid_stat *ps)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct pid *sid = BPF_CORE_READ(task, signal, pids[PIDTYPE_SID]);

	bpf_get_current_comm(ps->comm, sizeof(ps->comm));
	ps->comm_ns = bpf_ktime_get_ns();
	ps->cgroup_id = bpf_get_current_cgroup_id();
	ps->sid = BPF_CORE_READ(sid, numbers[0].nr);
	ps->ppid = BPF_CORE_READ(task, real_parent, tgid);
}

/* A slot for the current process (tgid), given-back ones first; NULL when none is free. Two
 * threads may race here: the one whose pid_slot insert fails gives its slot back and uses the
 * winner's. */
static __always_inline struct sw_pid_slot *take_slot(u32 tgid)
{
	struct sw_pid_alloc *a = bpf_map_lookup_elem(&pid_alloc, &zero);
	struct sw_pid_slot fresh = {};
	struct sw_pid_slot *ent;
	struct sw_pid_stat *ps;
	u64 v;

	if (!a)
		return NULL;
	if (!bpf_map_pop_elem(&free_slots, &v)) {
		fresh.slot = (u32)v;
		fresh.gen = v >> 32;
	} else {
		u64 n = __sync_fetch_and_add(&a->fresh_used, 1);

		if (n >= cfg.pid_slots)
			return NULL;
		fresh.slot = n;
	}
	fresh.inst = __sync_fetch_and_add(&a->next_inst, 1) + 1;
	if (bpf_map_update_elem(&pid_slot, &tgid, &fresh, BPF_NOEXIST)) {
		v = fresh.slot | (u64)fresh.gen << 32;
		bpf_map_push_elem(&free_slots, &v, 0); /* room: it holds every slot */
		return bpf_map_lookup_elem(&pid_slot, &tgid);
	}
	ent = bpf_map_lookup_elem(&pid_slot, &tgid);
	ps = bpf_map_lookup_elem(&pid_stats, &fresh.slot);
	if (ps)
		name_pid_stat(ps);
	return ent;
}

/* The current process's entry in pid_done (tgid, inst 0), made if absent: where it is counted
 * while it runs when no slot was free (shared by every CPU: atomic adds). */
static __always_inline struct sw_pid_stat *shared_pid_stat(u32 tgid, bool create)
{
	struct sw_pid_key key = {.tgid = tgid};
	struct sw_pid_stat *ps = bpf_map_lookup_elem(&pid_done, &key);
	struct scratch *s;

	if (ps || !create)
		return ps;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return NULL;
	__builtin_memset(&s->sum, 0, sizeof(s->sum));
	name_pid_stat(&s->sum);
	if (!bpf_map_update_elem(&pid_done, &key, &s->sum, BPF_NOEXIST))
		count_one(&counters, struct sw_counters, pid_slots_full); /* once: who made it */
	return bpf_map_lookup_elem(&pid_done, &key); /* ours, or another CPU's */
}

/* The current process's counts for this CPU: its slot's copy (*shared false: plain adds), or
 * its pid_done entry (*shared true: atomic adds); made if absent (create), else NULL; NULL if
 * there is no room anywhere (counted once per process). The thread keeps which in
 * p->pid_slot: after its first call, one array lookup. */
static __always_inline struct sw_pid_stat *process_stat(struct sw_task *p, u64 id, bool *shared,
							bool create)
{
	u32 tgid = id >> 32;
	u32 cached = p ? p->pid_slot : SW_SLOT_UNKNOWN;
	struct sw_pid_slot *ent;
	struct sw_pid_stat *ps;

	*shared = false;
	if (cached != SW_SLOT_UNKNOWN && cached != SW_SLOT_SHARED) {
		u32 slot = cached - 1;

		return bpf_map_lookup_elem(&pid_stats, &slot);
	}
	if (cached == SW_SLOT_UNKNOWN) {
		if (p && p->stat_missed)
			return NULL; /* no room for this process: tried once, counted once */
		ent = bpf_map_lookup_elem(&pid_slot, &tgid);
		if (!ent && create)
			ent = take_slot(tgid);
		if (ent) {
			u32 slot = ent->slot;

			if (p)
				p->pid_slot = slot + 1;
			return bpf_map_lookup_elem(&pid_stats, &slot);
		}
	}
	*shared = true;
	ps = shared_pid_stat(tgid, create);
	if (p && create) {
		if (ps) {
			p->pid_slot = SW_SLOT_SHARED;
		} else {
			p->stat_missed = 1;
			if ((u32)id == tgid) /* once per process: its main thread */
				count_one(&counters, struct sw_counters, pid_stats_full);
		}
	}
	return ps;
}

/* The counts of process tgid, which need not be the current one (an io_uring completion),
 * for this CPU: its slot's copy, else its pid_done entry (*shared); NULL if it has neither. */
static __always_inline struct sw_pid_stat *pid_stat_of(u32 tgid, bool *shared)
{
	struct sw_pid_slot *ent = bpf_map_lookup_elem(&pid_slot, &tgid);

	*shared = !ent;
	if (ent) {
		u32 slot = ent->slot;

		return bpf_map_lookup_elem(&pid_stats, &slot);
	}
	return shared_pid_stat(tgid, false);
}

/* Add v to field of ps: plainly on a per-CPU copy, atomically on a shared entry. */
#define ps_add(ps, shared, field, v)                                      \
	do {                                                              \
		if (shared)                                               \
			__sync_fetch_and_add(&(ps)->field, (v));          \
		else                                                      \
			(ps)->field += (v);                               \
	} while (0)

/* dur is 0 with --no-latency (cfg.no_latency): total_ns stays 0 and the histogram is left
 * alone; userspace reports the latency as not measured. */
static __always_inline struct sw_pid_stat *account(struct sw_task *p, u64 id, u32 nr, s64 ret,
						   u64 dur, u8 flags, bool *shared)
{
	struct sw_stat *s = bpf_map_lookup_elem(&stats, &nr);
	struct sw_pid_stat *ps = process_stat(p, id, shared, true);
	bool err = ret < 0 && ret > -4096;
	u64 in = ret > 0 && (flags & SW_SC_BYTES_IN) ? ret : 0;
	u64 out = ret > 0 && (flags & SW_SC_BYTES_OUT) ? ret : 0;

	/* Plain adds are exact: these are per-CPU slots written only by this program, and the
	 * kernel never runs one raw_tp program twice at once on a CPU (prog->active guard;
	 * migration is disabled), so no read-modify-write here can interleave with another. */
	if (s) {
		add_call(s, dur, err, in, out);
		if (!cfg.no_latency)
			s->hist[log2_u64(dur) & (SW_HIST_BUCKETS - 1)] += 1;
	}
	if (!ps)
		return NULL;
	if (!*shared) {
		add_call(ps, dur, err, in, out);
		return ps;
	}
	__sync_fetch_and_add(&ps->count, 1);
	__sync_fetch_and_add(&ps->total_ns, dur);
	if (err)
		__sync_fetch_and_add(&ps->errors, 1);
	if (in)
		__sync_fetch_and_add(&ps->bytes_in, in);
	if (out)
		__sync_fetch_and_add(&ps->bytes_out, out);
	return ps;
}

/* detect: a write to a regular file, kept as evidence (bytes and writes per file). */
static __always_inline void note_file_written(struct file *f, u64 bytes, u32 sid)
{
	struct sw_file_key key = {};
	struct sw_file_stat *fs;

	key.sid = sid;
	key.ino = BPF_CORE_READ(f, f_inode, i_ino);
	key.dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	fs = bpf_map_lookup_elem(&files_written, &key);
	if (!fs) {
		struct sw_file_stat fresh = {};

		bpf_probe_read_kernel_str(fresh.name, sizeof(fresh.name),
					  BPF_CORE_READ(f, f_path.dentry, d_name.name));
		bpf_map_update_elem(&files_written, &key, &fresh, BPF_NOEXIST);
		fs = bpf_map_lookup_elem(&files_written, &key); /* ours, or another CPU's */
		if (!fs) {
			count_one(&counters, struct sw_counters, evidence_full); /* full */
			return;
		}
	}
	__sync_fetch_and_add(&fs->bytes, bytes);
	__sync_fetch_and_add(&fs->writes, 1);
}

/* detect: a connect that succeeded or is under way, by family and socket type; inet remote
 * endpoints are kept as evidence. */
static __always_inline void count_connect(struct sw_task *p, struct sw_pid_stat *ps,
					  bool shared, u64 now)
{
	struct sw_endpoint_key key = {};
	struct sw_endpoint_stat *n;
	u16 family = 0;
	u16 port = 0;

	if (bpf_probe_read_user(&family, sizeof(family), (void *)p->args[1]))
		return;
	if (family == AF_UNIX) {
		ps_add(ps, shared, connects_unix, 1);
		return;
	}
	if (family != AF_INET && family != AF_INET6) {
		if (family) /* AF_UNSPEC dissolves a UDP association: not a connect */
			ps_add(ps, shared, connects_other, 1);
		return;
	}
	{
		struct file *f = current_fd_file(p->args[0]);
		struct socket *sock = f ? BPF_CORE_READ(f, private_data) : NULL;
		short type = sock ? BPF_CORE_READ(sock, type) : 0;

		if (type == SOCK_STREAM)
			ps_add(ps, shared, connects_tcp, 1);
		else
			ps_add(ps, shared, connects_udp, 1);
	}
	bpf_probe_read_user(&port, sizeof(port), (void *)(p->args[1] + 2));
	key.sid = ps->sid;
	key.family = family;
	key.port = bpf_ntohs(port);
	if (family == AF_INET)
		bpf_probe_read_user(key.addr, 4, (void *)(p->args[1] + 4));
	else
		bpf_probe_read_user(key.addr, 16, (void *)(p->args[1] + 8));
	n = bpf_map_lookup_elem(&endpoints, &key);
	if (!n) {
		struct sw_endpoint_stat fresh = {};

		bpf_map_update_elem(&endpoints, &key, &fresh, BPF_NOEXIST);
		n = bpf_map_lookup_elem(&endpoints, &key); /* ours, or another CPU's */
		if (!n) {
			count_one(&counters, struct sw_counters, evidence_full); /* full */
			return;
		}
	}
	__sync_fetch_and_add(&n->connects, 1);
	n->last_ns = now; /* detect names the endpoint after a DNS answer received before this */
}

/* detect: the inet socket (UDP or TCP) behind file f, or NULL. */
static __always_inline struct sock *inet_sock_of(struct file *f)
{
	struct socket *sock = BPF_CORE_READ(f, private_data);
	struct sock *sk;
	short type;
	u16 family;

	if (!sock)
		return NULL;
	type = BPF_CORE_READ(sock, type);
	sk = BPF_CORE_READ(sock, sk);
	if ((type != SOCK_DGRAM && type != SOCK_STREAM) || !sk)
		return NULL;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	return family == AF_INET || family == AF_INET6 ? sk : NULL;
}

/* detect: a socket's peer port, from the socket (connected) or else from the source address
 * the call wrote (`from`: recvfrom's arg 4, a msghdr's msg_name); 0 when unknown. */
static __always_inline u16 peer_port(struct sock *sk, void *from)
{
	u16 port = BPF_CORE_READ(sk, __sk_common.skc_dport);

	if (port)
		return bpf_ntohs(port);
	if (!from || bpf_probe_read_user(&port, sizeof(port), from + 2))
		return 0;
	return bpf_ntohs(port);
}

/* detect: the base of the first iovec of a user array, its length in *len (0: none). */
static __always_inline u64 first_iov(struct iovec *iov, u64 *len)
{
	*len = iov ? BPF_CORE_READ_USER(iov, iov_len) : 0;
	return iov ? (u64)BPF_CORE_READ_USER(iov, iov_base) : 0;
}

/* detect: one message a traced process received from port 53 (len bytes at user address buf),
 * copied to the DNS ring for userspace to parse. Fewer bytes than a DNS header (a TCP
 * message's 2-byte length read alone, as glibc does) are not an answer. */
static __always_inline void dns_ring_add(u64 buf, u64 len, u32 sid, u64 id, u64 now)
{
	struct sw_dns_answer *a;
	u64 *next, seq;
	u32 key, n;

	if (!buf || len < SW_DNS_HEADER)
		return;
	key = SW_DETECT_DNS_NEXT;
	next = bpf_map_lookup_elem(&detect, &key);
	if (!next)
		return;
	seq = __sync_fetch_and_add(next, 1);
	key = seq & (SW_DNS_SLOTS - 1);
	a = bpf_map_lookup_elem(&dns_answers, &key);
	if (!a)
		return;
	a->seq_begin = seq + 1;
	a->ts_ns = now;
	a->tgid = id >> 32;
	a->sid = sid;
	a->len = len;
	n = bounded(len, SW_DNS_MAX);
	a->copied = bpf_probe_read_user(a->data, n, (void *)buf) ? 0 : n;
	a->seq_end = seq + 1;
}

/* detect: what the inet socket sk received from port 53, to the DNS ring (the names behind
 * the addresses the target then connects to): read, recvfrom, recvmsg and readv (the first
 * iovec), recvmmsg (the first iovec of each of its first SW_DNS_MMSG_MAX messages). */
static __always_inline void note_dns_answer(struct sw_task *p, struct sock *sk,
					    struct sw_syscall_info *info, s64 ret, u32 sid,
					    u64 id, u64 now)
{
	u8 dt = info->detect;
	u64 buf = p->args[1], len = ret, iov_len;
	void *from = NULL;

	if (dt & SW_DT_DNS_MMSG) {
		for (int i = 0; i < SW_DNS_MMSG_MAX; i++) {
			struct mmsghdr *m = (struct mmsghdr *)(buf + i * sizeof(struct mmsghdr));
			u64 base;

			if (i >= ret)
				break;
			from = BPF_CORE_READ_USER(m, msg_hdr.msg_name);
			if (peer_port(sk, from) != SW_DNS_PORT)
				continue;
			base = first_iov(BPF_CORE_READ_USER(m, msg_hdr.msg_iov), &iov_len);
			len = BPF_CORE_READ_USER(m, msg_len);
			dns_ring_add(base, len < iov_len ? len : iov_len, sid, id, now);
		}
		return;
	}
	if (dt & SW_DT_DNS_MSG) {
		struct user_msghdr *msg = (struct user_msghdr *)buf;

		from = BPF_CORE_READ_USER(msg, msg_name);
		buf = first_iov(BPF_CORE_READ_USER(msg, msg_iov), &iov_len);
		len = len < iov_len ? len : iov_len;
	} else if (dt & SW_DT_DNS_IOV) {
		buf = first_iov((struct iovec *)buf, &iov_len);
		len = len < iov_len ? len : iov_len;
	} else if (dt & SW_DT_DNS_FROM) {
		from = (void *)p->args[4];
	}
	if (peer_port(sk, from) == SW_DNS_PORT)
		dns_ring_add(buf, len, sid, id, now);
}

/* detect: the current process's fd classes, good for this lease epoch, file table and slot
 * generation (started afresh when not); NULL when it has none (no slot: counted in pid_done,
 * or no epoch yet): then every call walks. */
static __always_inline struct sw_fd_classes *fd_classes_of(struct sw_task *p,
							   struct sw_pid_stat *ps, bool shared)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 key = SW_DETECT_EPOCH;
	struct sw_fd_classes *c;
	u64 *epoch, files;
	u32 slot;

	if (shared || p->pid_slot == SW_SLOT_UNKNOWN || p->pid_slot == SW_SLOT_SHARED)
		return NULL;
	slot = p->pid_slot - 1;
	c = bpf_map_lookup_elem(&fd_classes, &slot);
	epoch = bpf_map_lookup_elem(&detect, &key);
	if (!c || !epoch || !*epoch)
		return NULL;
	files = (u64)task->files;
	if (c->epoch != *epoch || c->files != files || c->gen != ps->gen) {
		for (int i = 0; i < SW_FDC_WORDS; i++)
			c->bits[i] = 0;
		c->files = files;
		c->gen = ps->gen;
		__sync_fetch_and_add(&c->forgets, 1);
		c->epoch = *epoch;
	}
	return c;
}

/* detect: fd's class is no longer known (close, connect). */
static __always_inline void forget_fd(struct sw_fd_classes *c, u64 fd)
{
	__sync_fetch_and_add(&c->forgets, 1);
	if (fd < SW_FDC_CACHED)
		__sync_fetch_and_and(&c->bits[(fd >> 5) & (SW_FDC_WORDS - 1)],
				     ~(3ULL << ((fd & 31) * 2)));
}

/* detect: no fd's class is known any more (dup2, dup3, close_range, exec, io_uring close). */
static __always_inline void forget_all(struct sw_fd_classes *c)
{
	__sync_fetch_and_add(&c->forgets, 1);
	c->epoch = 0; /* started afresh at the next look */
}

/* detect: what file f is to detect (SW_FDC_*). */
static __always_inline u32 fd_class_of(struct file *f)
{
	u32 mode = BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT;
	struct sock *sk;
	u16 port;

	if (mode == S_IFREG)
		return SW_FDC_FILE;
	if (mode != S_IFSOCK || !(sk = inet_sock_of(f)))
		return SW_FDC_OTHER;
	port = BPF_CORE_READ(sk, __sk_common.skc_dport);
	return port && port != bpf_htons(SW_DNS_PORT) ? SW_FDC_OTHER : SW_FDC_WALK;
}

/* detect, under the lease: bytes moved to or from a regular file, and DNS answers. The fd's
 * class comes from the process's fd classes when known; else the fd -> file -> inode walk
 * finds it and it is remembered, unless a forget came meanwhile (forgets changed). */
static __always_inline void file_io(struct sw_task *p, struct sw_pid_stat *ps, bool shared,
				    struct sw_syscall_info *info, s64 ret, u64 id, u64 now)
{
	struct sw_fd_classes *c = fd_classes_of(p, ps, shared);
	u64 fd = p->args[0], forgets = 0;
	u32 cls = SW_FDC_UNKNOWN, w = 0, shift = 0;
	struct file *f;

	if (c && fd < SW_FDC_CACHED) {
		w = (fd >> 5) & (SW_FDC_WORDS - 1);
		shift = (fd & 31) * 2;
		forgets = c->forgets;
		barrier();
		cls = (c->bits[w] >> shift) & 3;
	}
	if (cls == SW_FDC_OTHER || (cls == SW_FDC_WALK && !(info->detect & SW_DT_DNS)))
		return;
	if (cls == SW_FDC_FILE && (info->flags & SW_SC_BYTES_IN)) {
		ps_add(ps, shared, file_bytes_in, ret);
		return;
	}
	f = current_fd_file(fd); /* a write (its file is evidence), or not known yet */
	if (!f)
		return;
	if (cls == SW_FDC_UNKNOWN) {
		cls = fd_class_of(f);
		if (c && fd < SW_FDC_CACHED) {
			__sync_fetch_and_or(&c->bits[w], (u64)cls << shift);
			if (c->forgets != forgets) /* a close or connect since we looked */
				__sync_fetch_and_and(&c->bits[w], ~(3ULL << shift));
		}
	}
	if (cls == SW_FDC_FILE) {
		if (info->flags & SW_SC_BYTES_IN) {
			ps_add(ps, shared, file_bytes_in, ret);
		} else {
			ps_add(ps, shared, file_bytes_out, ret);
			note_file_written(f, ret, ps->sid);
		}
	} else if (cls == SW_FDC_WALK && (info->detect & SW_DT_DNS)) {
		struct sock *sk = inet_sock_of(f);

		if (sk)
			note_dns_answer(p, sk, info, ret, ps->sid, id, now);
	}
}

/* detect: connects (always), and while a detect run holds the lease (p->detect_args, set at
 * sys_enter) bytes moved to or from regular files, DNS answers and the forgets that keep the
 * fd classes true (docs/detect.md). Only for the calls that carry them: the rest pay one flag
 * test. */
static __always_inline void detect_io(struct sw_task *p, struct sw_pid_stat *ps, bool shared,
				      struct sw_syscall_info *info, s64 ret, u64 id, u64 now)
{
	u8 dt = info->detect;

	if (p->detect_args) {
		if (dt & (SW_DT_FD_CLOSE | SW_DT_FD_RESET | SW_DT_CONNECT)) {
			struct sw_fd_classes *c = fd_classes_of(p, ps, shared);

			if (c && (dt & SW_DT_FD_RESET))
				forget_all(c);
			else if (c)
				forget_fd(c, p->args[0]);
		} else if (ret > 0 && (dt & SW_DT_DNS_MMSG)) {
			struct file *f = current_fd_file(p->args[0]);
			struct sock *sk = f ? inet_sock_of(f) : NULL;

			if (sk)
				note_dns_answer(p, sk, info, ret, ps->sid, id, now);
		} else if (ret > 0 && info->fd_arg == 0 &&
			   (info->flags & (SW_SC_BYTES_IN | SW_SC_BYTES_OUT))) {
			file_io(p, ps, shared, info, ret, id, now);
		}
	}
	if ((dt & SW_DT_CONNECT) && (ret == 0 || ret == -EINPROGRESS))
		count_connect(p, ps, shared, now);
}

/* detect_io() for sw_sys_exit, as a global function: verified once, on its own (see
 * sw_syscall_record()). ps is the process's counts account() returned: shared (atomic adds)
 * exactly when the thread counts in pid_done (process_stat() set p->pid_slot so). */
__noinline int sw_detect_io(struct sw_task *p, struct sw_pid_stat *ps,
			    struct sw_syscall_info *info, s64 ret, u64 now)
{
	if (!p || !ps || !info)
		return 0;
	detect_io(p, ps, p->pid_slot == SW_SLOT_SHARED, info, ret, bpf_get_current_pid_tgid(),
		  now);
	return 0;
}

/* sys_exit, step 1: the thread's syscall in flight ends. Only traced threads have one: this
 * lookup is the filter. Returns the thread's state (NULL: nothing to do) and *ts the entry. */
static __always_inline struct sw_task *end_syscall(struct task_struct *task, u64 id, u64 *ts)
{
	struct sw_task *p;

	if (cfg.mode == SW_TARGET_PID && !in_pid_range(id >> 32))
		return NULL;
	p = task_mark(&pending, task);
	if (!p || !p->ts)
		return NULL;
	*ts = p->ts;
	p->ts = 0;
	return p;
}

/* Step 2 is account(). Step 3: does the call get an event? */
static __always_inline bool wants_event(struct sw_task *p, struct sw_syscall_info *info, s64 ret)
{
	if (!(info->flags & SW_SC_ENABLED) || !p->args_ok || !streaming())
		return false;
	if ((info->flags & SW_SC_EXEC) && ret == 0)
		return false; /* the EXEC event reports it, with the new image's argv */
	if ((info->flags & SW_SC_FAILED_ONLY) && !(ret < 0 && ret > -4096))
		return false;
	return true;
}

/* Step 4: the fixed part of the record; data[] empty. */
static __always_inline void start_syscall_event(struct sw_syscall_event *ev, struct sw_task *p,
						u32 nr, s64 ret, u64 dur)
{
	ev->ret = ret;
	ev->duration_ns = dur;
	ev->nr = nr;
	ev->flags = 0;
	ev->fd_kind = SW_FD_NONE;
	ev->aux = 0;
	ev->path_len = 0;
	ev->path2_len = 0;
	ev->fdname_len = 0;
	ev->addr_len = 0;
	for (int i = 0; i < 6; i++)
		ev->args[i] = p->args[i];
}

/* Step 5: the path arguments as the user passed them, from data[0]. Returns the bytes used. */
static __always_inline u32 add_paths(struct sw_syscall_event *ev, struct sw_task *p,
				     struct sw_syscall_info *info)
{
	u32 off = 0;

	if (info->path_arg < 6) {
		int n = bpf_probe_read_user_str(&ev->data[0], SW_PATH_MAX,
						(void *)p->args[info->path_arg & 7]);
		if (n > 0) {
			off = n;
			ev->path_len = n;
			if (n == SW_PATH_MAX)
				ev->flags |= SW_F_PATH_TRUNC;
		}
	}
	if (info->path2_arg < 6 && off <= SW_PATH_MAX) {
		int n = bpf_probe_read_user_str(&ev->data[bounded(off, SW_PATH_MAX)], SW_PATH_MAX,
						(void *)p->args[info->path2_arg & 7]);
		if (n > 0) {
			off += n;
			ev->path2_len = n;
			if (n == SW_PATH_MAX)
				ev->flags |= SW_F_PATH2_TRUNC;
		}
	}
	return off;
}

/* Step 6: the name of the fd argument, at data[*off] (*off grows by its length): taken at
 * sys_enter (close), or now. false: the fd is runtime noise, the call gets no event. */
static __always_inline bool add_fd_name(struct scratch *s, struct sw_task *p,
					struct sw_syscall_info *info, u32 tid, u32 *off)
{
	struct sw_syscall_event *ev = &s->sc;
	u32 trunc = 0;
	u8 fd_arg;
	int n = 0;

	/* fstat through newfstatat(fd, "", AT_EMPTY_PATH): name the fd, not the empty path. */
	fd_arg = info->fd_arg;
	if (fd_arg >= 6 && ev->path_len == 1 && info->empty_path_fd_arg < 6)
		fd_arg = info->empty_path_fd_arg;
	if (fd_arg >= 6 || *off > 2 * SW_PATH_MAX)
		return true;
	if (info->flags & SW_SC_FD_AT_ENTER) {
		struct enter_name *en = bpf_map_lookup_elem(&enter_names, &tid);

		if (en) {
			if (en->len == 0xffff)
				return false;
			n = en->len;
			ev->fd_kind = en->kind;
			trunc = en->trunc;
			if (n > 0 && n <= SW_PATH_MAX)
				bpf_probe_read_kernel(&ev->data[bounded(*off, 2 * SW_PATH_MAX)],
						      bounded(n, SW_PATH_MAX), en->name);
			else
				n = 0;
			bpf_map_delete_elem(&enter_names, &tid);
		}
	} else {
		n = fd_name(p->args[fd_arg & 7], (char *)&ev->data[bounded(*off, 2 * SW_PATH_MAX)],
			    s->pathbuf, &ev->fd_kind, &trunc);
		if (n < 0)
			return false; /* runtime noise */
	}
	if (n > SW_PATH_MAX)
		n = SW_PATH_MAX;
	*off += n;
	ev->fdname_len = n;
	if (trunc)
		ev->flags |= SW_F_FDNAME_TRUNC;
	return true;
}

/* Step 7: the sockaddr argument, at data[*off] (*off grows by its length). With an addrlen
 * pointer (accept), only once the call succeeded: the kernel wrote the address then. */
static __always_inline void add_sockaddr(struct sw_syscall_event *ev, struct sw_task *p,
					 struct sw_syscall_info *info, s64 ret, u32 *off)
{
	u64 uaddr, alen;

	if (info->addr_arg >= 6 || *off > 3 * SW_PATH_MAX ||
	    (ret < 0 && (info->flags & SW_SC_ADDRLEN_PTR)))
		return;
	uaddr = p->args[info->addr_arg & 7];
	alen = info->addrlen_arg < 6 ? p->args[info->addrlen_arg & 7] : 0;
	if (info->flags & SW_SC_ADDRLEN_PTR) {
		int l = 0;

		if (alen)
			bpf_probe_read_user(&l, sizeof(l), (void *)alen);
		alen = l;
	}
	alen = bounded(alen, SW_ADDR_MAX);
	if (uaddr && alen > 0 &&
	    !bpf_probe_read_user(&ev->data[bounded(*off, 3 * SW_PATH_MAX)], alen, (void *)uaddr)) {
		*off += alen;
		ev->addr_len = alen;
	}
}

/* Step 8: the header, and out, data[] cut to the off bytes used. */
static __always_inline void emit_syscall_event(struct sw_syscall_event *ev, u64 id, u32 off,
					       u64 now)
{
	fill_hdr_at(&ev->hdr, SW_EV_SYSCALL, id, now);
	off = bounded(off, sizeof(ev->data));
	ev->hdr.size = offsetof(struct sw_syscall_event, data) + off;
	output(ev, offsetof(struct sw_syscall_event, data) + off, SW_EV_SYSCALL);
}

/* Steps 4 to 8: the record of a call that gets one (wants_event()), built and sent. A global
 * function (neither static nor inlined): the verifier checks it once, on its own, with its
 * arguments as their types say (a pointer may be NULL, a number anything), and sw_sys_exit's
 * paths only see a call that returns a number. Inlined, it was checked again along every path
 * account() and detect_io() take to it: ~117,000 instructions processed, ~155 ms of the
 * tracer's load (bench/README.md, "Streaming and start-up"). p->nr is the call's number. */
__noinline int sw_syscall_record(struct sw_task *p, struct sw_syscall_info *info, s64 ret,
				 u64 dur, u64 now)
{
	u64 id = bpf_get_current_pid_tgid();
	struct scratch *s;
	u32 off;

	if (!p || !info)
		return 0;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	start_syscall_event(&s->sc, p, p->nr, ret, dur);
	off = add_paths(&s->sc, p, info);
	if (!add_fd_name(s, p, info, (u32)id, &off))
		return 0;
	add_sockaddr(&s->sc, p, info, ret, &off);
	if (info->flags & SW_SC_CLONE3)
		bpf_probe_read_user(&s->sc.aux, sizeof(s->sc.aux), (void *)p->args[0]);
	emit_syscall_event(&s->sc, id, off, now);
	return 0;
}

/* --no-latency: the syscall's number and arguments as the registers hold them at sys_exit.
 * x86-64 keeps the number in orig_ax and the argument registers as they were at entry (the
 * return value goes to ax), except where the call itself rewrote them: a successful execve
 * zeroes them for the new image (its count needs none), rt_sigreturn restores the interrupted
 * context and sets orig_ax to -1. arm64: syscallno, orig_x0 for the first argument. */
#if defined(__TARGET_ARCH_x86)
#define SW_EXIT_NR(regs) ((regs)->orig_ax)
#define SW_NR_RT_SIGRETURN 15
#define SW_NR_CLONE 56
#define SW_NR_FORK 57
#define SW_NR_VFORK 58
#elif defined(__TARGET_ARCH_arm64)
#define SW_EXIT_NR(regs) ((regs)->syscallno)
#define SW_NR_RT_SIGRETURN 139
#define SW_NR_CLONE 220
#define SW_NR_FORK 0xffffffff  /* none */
#define SW_NR_VFORK 0xffffffff
#else
#error "--no-latency's sys_exit: say where this architecture keeps the syscall number"
#endif
#define SW_NR_CLONE3 435

/* A thread's first return to user space after fork/clone is a sys_exit too, of the parent's
 * call, returning 0 in the child: not a call the child made (the default never sees it: the
 * child's storage starts with no call in flight). A parent's clone never returns 0. */
static __always_inline bool child_fork_return(u32 nr, s64 ret)
{
	return ret == 0 && (nr == SW_NR_CLONE || nr == SW_NR_CLONE3 || nr == SW_NR_FORK ||
			    nr == SW_NR_VFORK);
}

/* --no-latency's sys_exit: everything the default's two programs count but the latency, in one
 * program and with no clock read while no detect runs. The membership test is sys_enter's; the
 * number and the arguments detect needs come from the registers (SW_EXIT_NR). The clock is read
 * only for a connect (rare; detect keeps its time) and, while detect holds its lease, for the
 * calls that need the lease (lease_held(); the coarse clock, cheaper, is not offered to
 * tracing programs: the verifier refuses bpf_ktime_get_coarse_ns() there). */
static __always_inline int count_at_exit(struct task_struct *task, u64 id, struct pt_regs *regs,
					 s64 ret)
{
	struct sw_task *p = syscall_task(task, id >> 32);
	struct sw_syscall_info *info;
	struct sw_pid_stat *ps;
	bool shared;
	long orig;
	u32 nr;

	if (!p)
		return 0;
	if (p->skip_exit) {
		p->skip_exit = 0;
		return 0;
	}
	orig = SW_EXIT_NR(regs);
	nr = orig == -1 ? SW_NR_RT_SIGRETURN : (u32)orig;
	if (nr >= SW_MAX_SYSCALLS || child_fork_return(nr, ret))
		return 0;
	info = bpf_map_lookup_elem(&syscall_info, &nr);
	if (!info)
		return 0;
	ps = account(p, id, nr, ret, 0, info->flags, &shared);
	if (!ps)
		return 0;
	if (info->detect & SW_DT_CONNECT) {
		u64 now = bpf_ktime_get_ns();

		p->args[0] = PT_REGS_PARM1_SYSCALL(regs);
		p->args[1] = PT_REGS_PARM2_SYSCALL(regs);
		p->args[2] = PT_REGS_PARM3_SYSCALL(regs);
		p->detect_args = detecting(now);
		sw_detect_io(p, ps, info, ret, now);
		p->detect_args = 0;
	} else if (leased_call(info)) {
		u64 now = 0;

		if (lease_held(&now)) {
			p->args[0] = PT_REGS_PARM1_SYSCALL(regs);
			p->args[1] = PT_REGS_PARM2_SYSCALL(regs);
			if (info->detect & SW_DT_DNS_FROM)
				p->args[4] = PT_REGS_PARM5_SYSCALL(regs);
			p->detect_args = 1;
			sw_detect_io(p, ps, info, ret, now);
			p->detect_args = 0;
		}
	}
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sw_sys_exit, struct pt_regs *regs, long syscall_ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u64 id = task_ids(task);
	struct sw_syscall_info *info;
	struct sw_task *p;
	u64 ts, dur, now;
	u32 nr;
	s64 ret;

	if (cfg.no_latency)
		return count_at_exit(task, id, regs, syscall_ret);
	p = end_syscall(task, id, &ts);
	if (!p)
		return 0;
	nr = p->nr;
	if (nr >= SW_MAX_SYSCALLS)
		return 0;
	ret = syscall_ret;
	now = bpf_ktime_get_ns();
	dur = now - ts;
	info = bpf_map_lookup_elem(&syscall_info, &nr);
	if (!info)
		return 0;
	{
		bool shared;
		struct sw_pid_stat *ps = account(p, id, nr, ret, dur, info->flags, &shared);

		/* swatch detect's counters: only calls that carry them pay the call */
		if (ps && (p->detect_args || (info->detect & SW_DT_CONNECT)))
			sw_detect_io(p, ps, info, ret, now);
	}
	if (wants_event(p, info, ret))
		sw_syscall_record(p, info, ret, dur, now);
	return 0;
}

/* The process took a new name at exec: per-process stats show it (the CPU copy with the
 * newest comm_ns wins when the copies are summed). */
static __always_inline void name_process(u64 id)
{
	struct sw_task *p = task_mark(&pending, bpf_get_current_task_btf());
	struct sw_pid_stat *ps;
	bool shared;

	ps = process_stat(p, id, &shared, true);
	if (!ps)
		return;
	bpf_get_current_comm(ps->comm, sizeof(ps->comm));
	ps->comm_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&ps->execs, 1); /* detect's execve rate */
}

/* The exec'ing task's parents, nearest first, SW_ANCESTRY_MAX at most; stops after pid 1. */
static __always_inline u16 read_ancestry(struct task_struct *task, struct sw_ancestor *out)
{
	struct task_struct *t = task;
	u16 n = 0;

	for (int i = 0; i < SW_ANCESTRY_MAX; i++) {
		struct task_struct *parent = BPF_CORE_READ(t, real_parent);
		u32 pid;

		if (!parent || parent == t)
			break;
		pid = BPF_CORE_READ(parent, tgid);
		if (pid == 0)
			break;
		out[i].pid = pid;
		BPF_CORE_READ_STR_INTO(&out[i].comm, parent, group_leader, comm);
		n = i + 1;
		if (pid == 1)
			break;
		t = parent;
	}
	return n;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sw_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	u64 id = bpf_get_current_pid_tgid();
	struct sw_exec_event *ev;
	struct scratch *s;
	u64 start, end, len;
	int n;

	if (!traced(id))
		return 0;
	name_process(id);
	if (!streaming())
		return 0;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	ev = &s->exec;
	ev->flags = 0;
	ev->ancestry_len = read_ancestry(task, ev->ancestry);
	ev->argc = BPF_CORE_READ(bprm, argc);
	n = bpf_probe_read_kernel_str(ev->data, SW_PATH_MAX, BPF_CORE_READ(bprm, filename));
	if (n < 0)
		n = 0;
	if (n == SW_PATH_MAX)
		ev->flags |= SW_F_PATH_TRUNC;
	ev->filename_len = n;
	start = BPF_CORE_READ(task, mm, arg_start);
	end = BPF_CORE_READ(task, mm, arg_end);
	len = end > start ? end - start : 0;
	if (len > SW_ARGV_MAX) {
		len = SW_ARGV_MAX;
		ev->flags |= SW_F_ARGV_TRUNC;
	}
	len = bounded(len, SW_ARGV_MAX);
	if (bpf_probe_read_user(&ev->data[bounded(n, SW_PATH_MAX)], len, (void *)start))
		len = 0;
	ev->argv_len = len;
	fill_hdr(&ev->hdr, SW_EV_EXEC, id);
	len = bounded(n + len, sizeof(ev->data));
	ev->hdr.size = offsetof(struct sw_exec_event, data) + len;
	output(ev, offsetof(struct sw_exec_event, data) + len, SW_EV_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sw_fork, struct task_struct *parent, struct task_struct *child)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 child_tgid = child->tgid;
	bool thread = child_tgid == parent->tgid;
	struct sw_fork_event ev = {};
	struct sw_task *p, *c;

	/* The child has not run yet: whatever is marked here holds from its first instruction. */
	p = task_mark(&pending, bpf_get_current_task_btf());
	if (p && p->excluded) {
		/* swatch's own process: its threads and children are swatch's too */
		c = bpf_task_storage_get(&pending, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (c)
			c->excluded = 1;
		return 0;
	}
	if (!traced(id))
		return 0;
	if (cfg.mode == SW_TARGET_PID && (thread || cfg.follow_children)) {
		u32 failed;

		if (!thread)
			widen_pid_range(child_tgid);
		/* The mark is the membership: it holds whatever pid_filter can take. */
		failed = join_child(&pid_filter, &pending, child, thread, true);
		if (failed & SW_JOIN_UNMARKED)
			count_one(&counters, struct sw_counters, untracked);
		if (failed & SW_JOIN_NO_ROOM)
			count_one(&counters, struct sw_counters, pid_filter_full);
	}
	if (thread)
		return 0; /* a new thread of a process: no event */
	{
		/* detect's fork fan-out: the parent's count (the current task is the parent) */
		struct sw_pid_stat *ps;
		bool shared;

		ps = process_stat(p, id, &shared, true);
		if (ps)
			__sync_fetch_and_add(&ps->forks, 1);
	}
	if (!streaming())
		return 0;
	fill_hdr(&ev.hdr, SW_EV_FORK, id);
	ev.hdr.size = sizeof(ev);
	ev.child_pid = child_tgid;
	output(&ev, sizeof(ev), SW_EV_FORK);
	return 0;
}

struct fold_ctx {
	u32 slot;
	u32 gen;
	struct sw_pid_stat *sum;
};

/* bpf_loop callback: CPU i's copy of the slot added into the sum. */
static long fold_cpu(u64 i, struct fold_ctx *c)
{
	u32 slot = c->slot;
	struct sw_pid_stat *v = bpf_map_lookup_percpu_elem(&pid_stats, &slot, i);
	struct sw_pid_stat *sum = c->sum;

	if (!v)
		return 1; /* past the last CPU */
	if (v->gen != c->gen)
		return 0;
	sum->count += v->count;
	sum->errors += v->errors;
	sum->bytes_in += v->bytes_in;
	sum->bytes_out += v->bytes_out;
	sum->total_ns += v->total_ns;
	sum->execs += v->execs;
	sum->forks += v->forks;
	sum->short_lived |= v->short_lived;
	sum->exited |= v->exited;
	sum->file_bytes_in += v->file_bytes_in;
	sum->file_bytes_out += v->file_bytes_out;
	sum->connects_tcp += v->connects_tcp;
	sum->connects_udp += v->connects_udp;
	sum->connects_unix += v->connects_unix;
	sum->connects_other += v->connects_other;
	if (v->comm_ns > sum->comm_ns) {
		sum->comm_ns = v->comm_ns;
		__builtin_memcpy(sum->comm, v->comm, sizeof(sum->comm));
	}
	if (v->cgroup_id > sum->cgroup_id)
		sum->cgroup_id = v->cgroup_id;
	if (v->sid > sum->sid)
		sum->sid = v->sid;
	if (v->ppid > sum->ppid)
		sum->ppid = v->ppid;
	return 0;
}

/* bpf_loop callback: CPU i's copy emptied for the slot's next holder. */
static long reset_cpu(u64 i, struct fold_ctx *c)
{
	u32 slot = c->slot;
	struct sw_pid_stat *v = bpf_map_lookup_percpu_elem(&pid_stats, &slot, i);

	if (!v)
		return 1;
	v->gen = c->gen + 1; /* first: a reader holding (slot, gen) sees it changed hands */
	barrier();
	__builtin_memset(v, 0, offsetof(struct sw_pid_stat, gen));
	return 0;
}

/* The process tgid has ended (its last thread's exit): its slot's copies summed into pid_done,
 * then the slot emptied and given back. The order is what lets a reader (trace/pidstats.py)
 * count each process once without a lock: pid_done has it before any copy changes hands. */
static __always_inline void give_back_slot(u32 tgid)
{
	struct sw_pid_slot *ent = bpf_map_lookup_elem(&pid_slot, &tgid);
	struct sw_pid_key key = {.tgid = tgid};
	struct fold_ctx c;
	struct scratch *s;
	u64 v;

	if (!ent || __sync_val_compare_and_swap(&ent->folding, 0, 1) != 0)
		return; /* no slot, or another exiting thread of it took it */
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s) {
		ent->folding = 0;
		return;
	}
	c.slot = ent->slot;
	c.gen = ent->gen;
	key.inst = ent->inst;
	c.sum = &s->sum;
	__builtin_memset(&s->sum, 0, sizeof(s->sum));
	bpf_loop(cfg.nr_cpus, fold_cpu, &c, 0);
	if (bpf_map_update_elem(&pid_done, &key, &s->sum, BPF_NOEXIST)) {
		/* no room: the counts stay readable in the slot, which stays taken */
		ent->folding = 0;
		count_one(&counters, struct sw_counters, pid_slots_kept);
		return;
	}
	bpf_map_delete_elem(&pid_slot, &tgid);
	bpf_loop(cfg.nr_cpus, reset_cpu, &c, 0);
	v = c.slot | (u64)(c.gen + 1) << 32;
	bpf_map_push_elem(&free_slots, &v, 0);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sw_exit, struct task_struct *task)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	struct sw_exit_event ev = {};
	struct sw_state *st;
	bool ours;
	int code;

	/* (the thread's storage goes with its task_struct) */
	if (other_threads_live(task))
		return 0;
	/* The consumer's process is gone, however it ended (kill -9 included): nobody reads the
	 * ring any more. Stop emitting now, before its pid can be reused. */
	st = bpf_map_lookup_elem(&state, &zero);
	if (st && st->consumer_pid == tgid) {
		st->streaming = 0;
		st->consumer_pid = 0;
	}
	ours = traced(id);
	if (ours) {
		/* detect's fork fan-out: did it live less than SW_SHORT_LIVED_NS from its fork? */
		struct sw_task *p = task_mark(&pending, bpf_get_current_task_btf());
		u64 born = BPF_CORE_READ(task, group_leader, start_time);
		struct sw_pid_stat *ps;
		bool shared;

		ps = process_stat(p, id, &shared, false);
		if (ps) {
			ps->exited = 1;
			if (bpf_ktime_get_ns() - born < SW_SHORT_LIVED_NS)
				ps->short_lived = 1;
		}
	}
	/* Its counts to pid_done, its slot to the next process: whether or not it is still a
	 * target (a comm or uid target may have changed its name or user since). */
	if (cfg.mode != SW_TARGET_PID || in_pid_range(tgid))
		give_back_slot(tgid);
	/* The process is gone: drop its tgid whoever it was, so a reused pid inherits nothing. */
	if (cfg.mode == SW_TARGET_PID && in_pid_range(tgid))
		leave_process(&pid_filter, tgid);
	if (!ours)
		return 0;
	if (streaming()) {
		code = BPF_CORE_READ(task, exit_code);
		fill_hdr(&ev.hdr, SW_EV_EXIT, id);
		ev.hdr.size = sizeof(ev);
		ev.signal = code & 0x7f;
		ev.exit_code = ev.signal ? -1 : (code >> 8) & 0xff;
		output(&ev, sizeof(ev), SW_EV_EXIT);
	}
	return 0;
}

#include "watcher_uring.bpf.h"
