/* io_uring: who owns a request, for the tracer (watcher_uring.bpf.h) and the enforcer's
 * reactive tier (policy.bpf.c). Include after vmlinux.h and the libbpf headers. */
#ifndef SWATCH_URING_BPF_H
#define SWATCH_URING_BPF_H

#define PF_IO_WORKER 0x00000010    /* an io_uring worker or SQPOLL thread (of the ring's owner) */
#define SW_IORING_SETUP_SQPOLL 2   /* uapi */

/* The thread that owns a request submitted by current: current itself, or on an SQPOLL ring
 * the thread that created the ring. The kernel names its SQPOLL thread "iou-sqp-<creator's
 * pid>" (sq_data->task_pid holds the creator until the thread starts; from 6.7 or so the
 * thread then overwrites it with its own pid, for fdinfo): the name is what stays. Sets
 * *sqpoll when the ring is an SQPOLL ring. */
static __always_inline u32 uring_owner_tid(struct io_kiocb *req, u32 tid, bool *sqpoll)
{
	struct io_ring_ctx *ctx = BPF_CORE_READ(req, ctx);
	char comm[SW_TASK_COMM_LEN] = {};
	u32 n = 0;

	*sqpoll = false;
	if (!(BPF_CORE_READ(ctx, flags) & SW_IORING_SETUP_SQPOLL))
		return tid;
	*sqpoll = true;
	bpf_get_current_comm(comm, sizeof(comm));
	if (comm[0] != 'i' || comm[1] != 'o' || comm[2] != 'u' || comm[3] != '-' ||
	    comm[4] != 's' || comm[5] != 'q' || comm[6] != 'p' || comm[7] != '-')
		return tid; /* not the SQPOLL thread (an io-wq worker, or the owner itself) */
	for (int i = 8; i < SW_TASK_COMM_LEN; i++) {
		char c = comm[i];

		if (c < '0' || c > '9')
			break;
		n = n * 10 + (c - '0');
	}
	return n ? n : tid;
}

/* The task whose name and parent a request's record carries: the group leader for an io_uring
 * kernel thread (its own name is "iou-sqp-N" / "iou-wrk-N"), else current. */
static __always_inline struct task_struct *uring_owner_task(struct task_struct *cur)
{
	return (cur->flags & PF_IO_WORKER) ? cur->group_leader : cur;
}

#endif /* SWATCH_URING_BPF_H */
