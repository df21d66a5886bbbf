/* The header every ring-buffer record starts with (struct sw_event_hdr, common.h), filled for
 * the current task. Include after vmlinux.h, the libbpf headers and common.h. */
#ifndef SWATCH_EVENT_BPF_H
#define SWATCH_EVENT_BPF_H

/* Everything but hdr->size, which the caller sets to the record's length. */
static __always_inline void fill_hdr(struct sw_event_hdr *h, u16 type, u64 pid_tgid)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	h->type = type;
	h->cpu = bpf_get_smp_processor_id();
	h->ktime_ns = bpf_ktime_get_ns();
	h->pid = pid_tgid >> 32;
	h->tid = (u32)pid_tgid;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (u32)bpf_get_current_uid_gid();
	h->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* The same at kernel time ``now`` (a clock read the caller made already), for programs that
 * may use the current task's typed pointer (tracing programs): the parent is two plain loads
 * instead of two bpf_probe_read_kernel() calls. */
static __always_inline void fill_hdr_at(struct sw_event_hdr *h, u16 type, u64 pid_tgid, u64 now)
{
	struct task_struct *task = bpf_get_current_task_btf();

	h->type = type;
	h->cpu = bpf_get_smp_processor_id();
	h->ktime_ns = now;
	h->pid = pid_tgid >> 32;
	h->tid = (u32)pid_tgid;
	h->ppid = task->real_parent->tgid;
	h->uid = (u32)bpf_get_current_uid_gid();
	h->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

#endif /* SWATCH_EVENT_BPF_H */
