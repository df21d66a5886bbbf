/* swatch tracer, io_uring part (included at the end of watcher.bpf.c; separate programs, so
 * plain syscall tracing pays nothing for it, nor does a process without a ring).
 *
 * io_uring operations never pass sys_enter/sys_exit. Their tracepoints do see them:
 *   submit:   tp_btf/io_uring_submit_req (6.4+) or tp_btf/io_uring_submit_sqe (6.1): the request
 *             after its prep, so opcode-specific data (struct io_open, ...) is filled in. The
 *             loader autoloads whichever the kernel has.
 *   complete: tp_btf/io_uring_complete: the request with its result in req->cqe.res (6.1 and
 *             6.4+ pass it differently; both leave it in the request).
 * At submission the request is remembered (LRU hash keyed by the request's address) with what
 * only the submitting context can tell: the owner, the fd's name, the paths, the sockaddr.
 * The completion finds it, counts it like a syscall (uring_stats per opcode, pid_stats per
 * process, detect's counters) and emits one SW_EV_URING record (a struct sw_syscall_event with
 * nr = the opcode, args[0] = the fd or -1, args[1] = the sqe's user_data).
 *
 * Paths: OPENAT/OPENAT2/STATX/UNLINKAT/MKDIRAT/RENAMEAT/SYMLINKAT/LINKAT copy their path into
 * the kernel (getname, a struct filename) during prep, before the submit tracepoint: swatch
 * reads that copy, the one the operation will use, so a thread rewriting the user buffer after
 * submission cannot make the event lie. CONNECT's address is read from user memory at
 * submission (6.1 copies it only when the operation runs; 6.4+ at prep, into a structure whose
 * layout differs): a racing thread can change it between our read and the kernel's. */

#include "uring.bpf.h"

#define SW_REQ_F_FIXED_FILE 1ULL   /* IOSQE_FIXED_FILE */

struct uring_pending {
	u64 ts;                 /* submission time */
	u32 tgid;               /* the owner process */
	s32 fd;                 /* the sqe's fd (-1: none, or a registered file's index) */
	u64 addr;               /* CONNECT: the user's sockaddr (detect reads its family) */
	u8 op;
	u8 has_ev;              /* ev below is filled (a consumer was streaming) */
	u8 fixed;
	u8 pad[5];
	struct sw_syscall_event ev; /* the record, but for ret, duration and ktime */
};

struct uring_scratch {
	struct uring_pending pend;
	char pathbuf[2 * SW_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SW_URING_OPS);
	__type(key, u32);
	__type(value, struct sw_uring_info);
} uring_info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SW_URING_OPS);
	__type(key, u32);
	__type(value, struct sw_stat);
} uring_stats SEC(".maps");

/* Requests of traced processes between submission and completion. LRU: one that never
 * completes (IOSQE_CQE_SKIP_SUCCESS) is evicted in time; counters.uring_submitted vs
 * uring_completed shows the difference. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 2048);
	__type(key, u64);
	__type(value, struct uring_pending);
} uring_reqs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct uring_scratch);
} uring_scratch SEC(".maps");

/* Is task (the ring's owner: the submitting task, or for an io_uring kernel thread the group
 * leader) one we trace? The same rules as traced(), for a task that may not be current. */
static __always_inline bool uring_traced(struct task_struct *task, u32 tgid)
{
	struct sw_task *p;

	if (cfg.mode == SW_TARGET_PID) {
		if (!in_pid_range(tgid))
			return false;
		p = task_mark(&pending, task);
		if (p)
			return !p->excluded;
		return tgid_listed(&pid_filter, tgid);
	}
	if (cfg.mode == SW_TARGET_COMM) {
		char comm[SW_TASK_COMM_LEN];

		BPF_CORE_READ_STR_INTO(&comm, task, comm);
		for (int i = 0; i < SW_TASK_COMM_LEN; i++) {
			if (comm[i] != cfg.target_comm[i])
				return false;
			if (!comm[i])
				break;
		}
	} else if (!mode_matches()) {
		return false;
	}
	p = task_mark(&pending, task);
	return !p || !p->excluded;
}

/* A path the kernel copied at prep (struct filename), into dst; its length with the NUL. */
static __always_inline u16 uring_filename(struct filename *fn, u8 *dst, u16 *flags, u16 trunc)
{
	const char *name = BPF_CORE_READ(fn, name);
	int n;

	if (!name)
		return 0;
	n = bpf_probe_read_kernel_str(dst, SW_PATH_MAX, name);
	if (n <= 0)
		return 0;
	if (n == SW_PATH_MAX)
		*flags |= trunc;
	return n;
}

/* The opcode's paths (kernel copies), at ev->data[0]; returns the bytes used. */
static __always_inline u32 uring_paths(struct io_kiocb *req, u8 op, struct sw_syscall_event *ev)
{
	struct filename *p1 = NULL, *p2 = NULL;
	u32 off;

	switch (op) {
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2:
		if (bpf_core_type_exists(struct io_open))
			p1 = BPF_CORE_READ((struct io_open *)req, filename);
		break;
	case IORING_OP_STATX:
		if (bpf_core_type_exists(struct io_statx))
			p1 = BPF_CORE_READ((struct io_statx *)req, filename);
		break;
	case IORING_OP_UNLINKAT:
		if (bpf_core_type_exists(struct io_unlink))
			p1 = BPF_CORE_READ((struct io_unlink *)req, filename);
		break;
	case IORING_OP_MKDIRAT:
		if (bpf_core_type_exists(struct io_mkdir))
			p1 = BPF_CORE_READ((struct io_mkdir *)req, filename);
		break;
	case IORING_OP_RENAMEAT:
		if (bpf_core_type_exists(struct io_rename)) {
			p1 = BPF_CORE_READ((struct io_rename *)req, oldpath);
			p2 = BPF_CORE_READ((struct io_rename *)req, newpath);
		}
		break;
	case IORING_OP_SYMLINKAT:
	case IORING_OP_LINKAT:
		if (bpf_core_type_exists(struct io_link)) {
			p1 = BPF_CORE_READ((struct io_link *)req, oldpath);
			p2 = BPF_CORE_READ((struct io_link *)req, newpath);
		}
		break;
	default:
		return 0;
	}
	off = p1 ? uring_filename(p1, ev->data, &ev->flags, SW_F_PATH_TRUNC) : 0;
	ev->path_len = off;
	if (p2 && off <= SW_PATH_MAX) {
		u16 n = uring_filename(p2, &ev->data[bounded(off, SW_PATH_MAX)], &ev->flags,
				       SW_F_PATH2_TRUNC);
		ev->path2_len = n;
		off += n;
	}
	return off;
}

/* The header of the owner's record: the process, and the thread that made the ring's
 * submission (for SQPOLL the thread that created the ring), named as its process is. */
static __always_inline void uring_hdr(struct sw_event_hdr *h, struct task_struct *owner, u32 tgid,
				      u32 tid)
{
	h->type = SW_EV_URING;
	h->cpu = bpf_get_smp_processor_id();
	h->pid = tgid;
	h->tid = tid;
	h->ppid = BPF_CORE_READ(owner, real_parent, tgid);
	h->uid = (u32)bpf_get_current_uid_gid();
	h->cgroup_id = bpf_get_current_cgroup_id();
	BPF_CORE_READ_STR_INTO(&h->comm, owner, comm);
}

/* A request's address as a plain number (the verifier refuses a pointer stored into a map
 * key): read from the tracepoint's argument slot. */
static __always_inline u64 req_key(u64 *ctx, int arg)
{
	u64 key = 0;

	bpf_probe_read_kernel(&key, sizeof(key), &ctx[arg]);
	return key;
}

static __always_inline int uring_submit(struct io_kiocb *req, u64 key)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct task_struct *owner;
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32, tid = (u32)id;
	struct sw_uring_info *info;
	struct uring_scratch *s;
	struct uring_pending *pd;
	struct sw_syscall_event *ev;
	struct sw_counters *c;
	u32 op, off = 0;
	bool sqpoll = false;

	owner = uring_owner_task(cur); /* a BTF pointer, as the task-storage helper wants */
	if (!uring_traced(owner, tgid))
		return 0;
	op = BPF_CORE_READ(req, opcode);
	if (op >= SW_URING_OPS)
		return 0;
	info = bpf_map_lookup_elem(&uring_info, &op);
	s = bpf_map_lookup_elem(&uring_scratch, &zero);
	if (!info || !s)
		return 0;
	pd = &s->pend;
	tid = uring_owner_tid(req, tid, &sqpoll);
	pd->ts = bpf_ktime_get_ns();
	pd->tgid = tgid;
	pd->op = op;
	pd->fd = -1;
	pd->addr = 0;
	pd->has_ev = 0;
	pd->fixed = 0;
	if (info->flags & SW_UR_FD) {
		if (BPF_CORE_READ(req, flags) & SW_REQ_F_FIXED_FILE)
			pd->fixed = 1;
		pd->fd = BPF_CORE_READ(req, cqe.fd);
	} else if (op == IORING_OP_CLOSE && bpf_core_type_exists(struct io_close)) {
		pd->fd = BPF_CORE_READ((struct io_close *)req, fd);
	}
	if (op == IORING_OP_CONNECT && bpf_core_type_exists(struct io_connect))
		pd->addr = (u64)BPF_CORE_READ((struct io_connect *)req, addr);
	ev = &pd->ev;
	if ((info->flags & SW_SC_ENABLED) && streaming()) {
		pd->has_ev = 1;
		uring_hdr(&ev->hdr, owner, tgid, tid);
		ev->nr = op;
		ev->flags = (sqpoll ? SW_F_URING_SQPOLL : 0) | (pd->fixed ? SW_F_URING_FIXED : 0);
		ev->fd_kind = SW_FD_NONE;
		ev->aux = 0;
		ev->path_len = 0;
		ev->path2_len = 0;
		ev->fdname_len = 0;
		ev->addr_len = 0;
		ev->args[0] = (u64)(s64)pd->fd;
		ev->args[1] = BPF_CORE_READ(req, cqe.user_data);
		ev->args[2] = 0;
		ev->args[3] = 0;
		ev->args[4] = 0;
		ev->args[5] = 0;
		if (bpf_core_type_exists(struct io_open) &&
		    (op == IORING_OP_OPENAT || op == IORING_OP_OPENAT2))
			ev->args[2] = BPF_CORE_READ((struct io_open *)req, how.flags);
		off = uring_paths(req, op, ev);
		if (pd->fd >= 0 && !pd->fixed && off <= 2 * SW_PATH_MAX) {
			u32 trunc = 0;
			int n = fd_name(pd->fd, (char *)&ev->data[bounded(off, 2 * SW_PATH_MAX)],
					s->pathbuf, &ev->fd_kind, &trunc);

			if (n > SW_PATH_MAX)
				n = SW_PATH_MAX;
			if (n > 0) {
				off += n;
				ev->fdname_len = n;
			}
			if (trunc)
				ev->flags |= SW_F_FDNAME_TRUNC;
		}
		if (pd->addr && off <= 3 * SW_PATH_MAX && bpf_core_type_exists(struct io_connect)) {
			u64 alen = BPF_CORE_READ((struct io_connect *)req, addr_len);

			alen = bounded(alen, SW_ADDR_MAX);
			if (alen > 0 && !bpf_probe_read_user(&ev->data[bounded(off, 3 * SW_PATH_MAX)],
							     alen, (void *)pd->addr)) {
				off += alen;
				ev->addr_len = alen;
			}
		}
		ev->hdr.size = offsetof(struct sw_syscall_event, data) +
			       bounded(off, sizeof(ev->data));
	}
	c = bpf_map_lookup_elem(&counters, &zero);
	if (c)
		__sync_fetch_and_add(&c->uring_submitted, 1);
	bpf_map_update_elem(&uring_reqs, &key, pd, BPF_ANY);
	return 0;
}

SEC("tp_btf/io_uring_submit_req")
int sw_uring_submit_req(u64 *ctx)
{
	return uring_submit((struct io_kiocb *)ctx[0], req_key(ctx, 0));
}

/* Kernels before 6.4 (6.1) call it io_uring_submit_sqe(req, force_nonblock). */
SEC("tp_btf/io_uring_submit_sqe")
int sw_uring_submit_sqe(u64 *ctx)
{
	return uring_submit((struct io_kiocb *)ctx[0], req_key(ctx, 0));
}

/* The fd's file again, at completion (in the owner's task context: the submitter, its SQPOLL
 * thread or an io-wq worker, all sharing its file table), for detect's file counters. */
static __always_inline struct file *uring_file(struct uring_pending *pd)
{
	if (pd->fd < 0 || pd->fixed || (bpf_get_current_pid_tgid() >> 32) != pd->tgid)
		return NULL;
	return current_fd_file(pd->fd);
}

SEC("tp_btf/io_uring_complete")
int sw_uring_complete(u64 *ctx)
{
	struct io_kiocb *req = (struct io_kiocb *)ctx[1];
	u64 key = req_key(ctx, 1);
	struct uring_pending *pd;
	struct sw_uring_info *info;
	struct sw_stat *st;
	struct sw_pid_stat *ps;
	struct sw_counters *c;
	bool shared;
	u32 op, tgid;
	u64 now, dur, in = 0, out = 0;
	s64 ret;
	bool err;

	if (!req)
		return 0;
	pd = bpf_map_lookup_elem(&uring_reqs, &key);
	if (!pd)
		return 0;
	op = pd->op;
	tgid = pd->tgid;
	info = bpf_map_lookup_elem(&uring_info, &op);
	if (!info) {
		bpf_map_delete_elem(&uring_reqs, &key);
		return 0;
	}
	ret = BPF_CORE_READ(req, cqe.res);
	now = bpf_ktime_get_ns();
	dur = now - pd->ts;
	err = ret < 0 && ret > -4096;
	if (ret > 0 && (info->flags & SW_SC_BYTES_IN))
		in = ret;
	if (ret > 0 && (info->flags & SW_SC_BYTES_OUT))
		out = ret;
	c = bpf_map_lookup_elem(&counters, &zero);
	if (c)
		__sync_fetch_and_add(&c->uring_completed, 1);
	st = bpf_map_lookup_elem(&uring_stats, &op);
	if (st) {
		add_call(st, dur, err, in, out);
		st->hist[log2_u64(dur) & (SW_HIST_BUCKETS - 1)] += 1;
	}
	/* a ring's close (or connect) changes what the owner's fds are: detect forgets them */
	if ((op == IORING_OP_CLOSE || (info->detect & SW_DT_CONNECT)) && detecting(now)) {
		struct sw_pid_slot *ent = bpf_map_lookup_elem(&pid_slot, &tgid);
		struct sw_fd_classes *fc;
		u32 slot;

		if (ent) {
			slot = ent->slot;
			fc = bpf_map_lookup_elem(&fd_classes, &slot);
			if (fc)
				forget_all(fc);
		}
	}
	ps = pid_stat_of(tgid, &shared);
	if (ps) {
		struct file *f;

		if (!shared) {
			add_call(ps, dur, err, in, out);
		} else {
			__sync_fetch_and_add(&ps->count, 1);
			__sync_fetch_and_add(&ps->total_ns, dur);
			if (err)
				__sync_fetch_and_add(&ps->errors, 1);
			if (in)
				__sync_fetch_and_add(&ps->bytes_in, in);
			if (out)
				__sync_fetch_and_add(&ps->bytes_out, out);
		}
		/* file bytes: only while a detect run holds the lease, as for the syscalls */
		if ((in || out) && detecting(now) && (f = uring_file(pd)) &&
		    (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) == S_IFREG) {
			if (in) {
				ps_add(ps, shared, file_bytes_in, in);
			} else {
				ps_add(ps, shared, file_bytes_out, out);
				note_file_written(f, out, ps->sid);
			}
		}
		if ((info->detect & SW_DT_CONNECT) && (ret == 0 || ret == -EINPROGRESS) &&
		    pd->addr && (bpf_get_current_pid_tgid() >> 32) == tgid) {
			struct sw_task t = {};

			t.args[0] = pd->fd;
			t.args[1] = pd->addr;
			count_connect(&t, ps, shared, now);
		}
	}
	if (pd->has_ev && !((info->flags & SW_SC_FAILED_ONLY) && !err) && streaming()) {
		struct sw_syscall_event *ev = &pd->ev;
		u32 size = ev->hdr.size;

		ev->ret = ret;
		ev->duration_ns = dur;
		ev->hdr.ktime_ns = bpf_ktime_get_ns();
		size = bounded(size, sizeof(*ev));
		if (size >= offsetof(struct sw_syscall_event, data))
			output(ev, size, SW_EV_URING);
	}
	bpf_map_delete_elem(&uring_reqs, &key);
	return 0;
}
