/* What every swatch BPF object (watcher.bpf.c, policy.bpf.c) shares with the others and with
 * the cffi binding (syscall_watcher/_build.py): the limits, the targeting modes and the header
 * every ring-buffer record starts with. Plain C, fixed-width types only: cffi's parser reads
 * everything between the SW_CDEF_BEGIN / SW_CDEF_END markers, and the C compiler checks that
 * both sides agree on every offset when the extension is built. */
#ifndef SWATCH_COMMON_H
#define SWATCH_COMMON_H

/* SW_CDEF_BEGIN */
#define SW_TASK_COMM_LEN 16
#define SW_MAX_SYSCALLS 512   /* syscall numbers below this are looked up in array maps */

/* Targeting modes (struct sw_config.mode, struct swp_config.mode: the enforcer takes PID
 * and CGROUP). */
#define SW_TARGET_ALL 0
#define SW_TARGET_PID 1
#define SW_TARGET_COMM 2
#define SW_TARGET_UID 3
#define SW_TARGET_CGROUP 4

/* Every record, of the tracer's ring and of the enforcer's, starts with this. */
struct sw_event_hdr {
	uint16_t type;
	uint16_t size;          /* bytes in the whole record */
	uint32_t cpu;
	uint64_t ktime_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	uint32_t pid;           /* tgid */
	uint32_t tid;
	uint32_t ppid;
	uint32_t uid;
	uint64_t cgroup_id;
	char comm[SW_TASK_COMM_LEN];
};
/* SW_CDEF_END */

#endif /* SWATCH_COMMON_H */
