/* The tracer's membership and streaming maps: defined once here for bpf/watcher.bpf.c, and
 * declared the same in every object loaded next to a tracer (bpf/tls.bpf.c), whose loader
 * reuses the tracer's maps by fd (libbpf checks the definitions agree). Include after
 * watcher.h (struct sw_pid_range, sw_task, sw_state). */
#ifndef SWATCH_MEMBERSHIP_BPF_H
#define SWATCH_MEMBERSHIP_BPF_H

/* SW_TARGET_PID: the traced processes (tgids), for the processes that existed at load and
 * for `status`. Children are also marked in their task-local storage at fork, so a full
 * pid_filter never loses one. Sized by the loader (--max-pids); memory only for live
 * entries; each process is removed when its last thread exits. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, u8);
} pid_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sw_pid_range);
} pid_range SEC(".maps");

/* Per-thread state: the syscall in flight and membership (struct sw_task). Task-local
 * storage is a pointer away from the task, much cheaper than a hash lookup on both sides of
 * every syscall, and it dies with the task: nothing here can be inherited by a reused pid.
 * SW_TARGET_PID: an entry means the thread is traced, unless it says excluded. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sw_task);
} pending SEC(".maps");

/* Is a consumer streaming (struct sw_state)? */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sw_state);
} state SEC(".maps");

#endif /* SWATCH_MEMBERSHIP_BPF_H */
