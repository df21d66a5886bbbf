/* Who is a target, for every swatch BPF object: a set of processes (a hash map of tgids,
 * u32 -> u8) and per-thread marks (task-local storage, which die with their task), or a cgroup
 * subtree. A child joins at sched_process_fork, before it runs, so whatever is marked there
 * holds from its first instruction; a process leaves at sched_process_exit of its last thread,
 * so a reused pid inherits nothing. Include after vmlinux.h and the libbpf headers. */
#ifndef SWATCH_TARGETS_BPF_H
#define SWATCH_TARGETS_BPF_H

/* Is the current task in the cgroup `id` (`level` below the v2 root) or in one below it? */
static __always_inline bool in_cgroup_tree(u64 id, u32 level)
{
	return bpf_get_current_ancestor_cgroup_id(level) == id;
}

static __always_inline bool tgid_listed(void *tgids, u32 tgid)
{
	return bpf_map_lookup_elem(tgids, &tgid) != NULL;
}

/* The mark of task t in the task storage `marks`, NULL if it has none. */
static __always_inline void *task_mark(void *marks, struct task_struct *t)
{
	return bpf_task_storage_get(marks, t, 0, 0);
}

/* What join_child() could not do. */
#define SW_JOIN_NO_ROOM 1   /* the set of tgids is full: the new process is not listed */
#define SW_JOIN_UNMARKED 2  /* no memory for the child's mark */

/* sched_process_fork, for a child of a target: a new process's tgid joins `tgids`; the child
 * is marked in `marks` (zeroed) when `mark` is set, and whenever `tgids` had no room for it.
 * Returns the SW_JOIN_* bits of what failed. */
static __always_inline u32 join_child(void *tgids, void *marks, struct task_struct *child,
				      bool thread, bool mark)
{
	u32 tgid = child->tgid;
	u32 failed = 0;
	u8 one = 1;

	if (!thread && bpf_map_update_elem(tgids, &tgid, &one, BPF_ANY)) {
		failed |= SW_JOIN_NO_ROOM;
		mark = true;
	}
	if (mark && !bpf_task_storage_get(marks, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		failed |= SW_JOIN_UNMARKED;
	return failed;
}

/* sched_process_exit runs for every thread: true while other threads of task's process
 * live on (the process has not ended). */
static __always_inline bool other_threads_live(struct task_struct *task)
{
	return BPF_CORE_READ(task, signal, live.counter) > 0;
}

/* The process tgid has ended: it leaves `tgids`, whoever it was. */
static __always_inline void leave_process(void *tgids, u32 tgid)
{
	bpf_map_delete_elem(tgids, &tgid);
}

#endif /* SWATCH_TARGETS_BPF_H */
