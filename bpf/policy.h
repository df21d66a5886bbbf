/* Shared between bpf/policy.bpf.c (the enforcer) and the cffi binding
 * (syscall_watcher/_build.py). Plain C, fixed-width types only; the cffi parser reads
 * everything between the SW_CDEF_BEGIN / SW_CDEF_END markers.
 *
 * Operation numbers are the bit order of syscall_watcher.policy.OPERATIONS. */
#ifndef SWATCH_POLICY_H
#define SWATCH_POLICY_H

#include "common.h" /* SW_TASK_COMM_LEN, SW_MAX_SYSCALLS, SW_TARGET_*, struct sw_event_hdr */

/* SW_CDEF_BEGIN */
#define SWP_VERSION 3
#define SWP_OPS 16            /* room for OPERATIONS (14 used) */
#define SWP_MAX_PATHS 16      /* = policy.SW_POLICY_MAX_PATHS */
#define SWP_PATH_MAX 256      /* = policy.SW_POLICY_PATH_MAX */
#define SWP_RULE_BLOCK 255    /* swp_denial.rule: a 'block' rule, not a path rule */
#define SWP_MAX_PHASES 16     /* = policy.SW_POLICY_MAX_PHASES: entries of "rules" */
#define SWP_PHASE_NAME 32     /* = policy.SW_POLICY_PHASE_NAME_MAX */

/* Operations (bit numbers). */
#define SWP_OP_EXEC 0
#define SWP_OP_FILE_OPEN 1
#define SWP_OP_CONNECT 2
#define SWP_OP_SOCKET 3
#define SWP_OP_BIND 4
#define SWP_OP_LISTEN 5
#define SWP_OP_KILL 6
#define SWP_OP_UNLINK 7
#define SWP_OP_RENAME 8
#define SWP_OP_MKDIR 9
#define SWP_OP_RMDIR 10
#define SWP_OP_READ 11
#define SWP_OP_WRITE 12
#define SWP_OP_FORK 13

/* Tiers: which mechanism holds an operation. */
#define SWP_TIER_NONE 0
#define SWP_TIER_LSM 1        /* BPF LSM program: blocked before */
#define SWP_TIER_FMOD_RET 2   /* fmod_ret on security_*: blocked before */
#define SWP_TIER_CGROUP 3     /* cgroup-BPF sock hooks: blocked before */
#define SWP_TIER_REACTIVE 4   /* SIGKILL from sys_enter: killed after */

/* struct swp_denial.action */
#define SWP_ACT_BLOCKED 1     /* the operation failed with EPERM */
#define SWP_ACT_KILLED 2      /* the process was sent SIGKILL; the call may have completed */
#define SWP_ACT_AUDIT 3       /* --audit-only: would have been denied, nothing done */

/* struct swp_denial.target_kind: what target[] holds */
#define SWP_TGT_NONE 0
#define SWP_TGT_PATH 1        /* a path (kernel-resolved, or as passed at sys_enter) */
#define SWP_TGT_ADDR 2        /* a struct sockaddr */
#define SWP_TGT_PID 3         /* aux = the pid signalled, aux2 = the signal */
#define SWP_TGT_SOCKET 4      /* aux = family, aux2 = type */

/* struct swp_syscall.flags (reactive tier) */
#define SWP_R_USED 1
#define SWP_R_SKIP_INET_ARG0 2     /* socket(): leave AF_INET/AF_INET6 to the cgroup tier */
#define SWP_R_SKIP_INET_ADDR 4     /* connect()/bind()/sendto()/sendmsg(): the same, by the
				    * sockaddr's family */
#define SWP_R_UNLINKAT 8           /* unlinkat(): AT_REMOVEDIR makes it rmdir */
#define SWP_R_KILL 16              /* path_arg = target pid arg, fd_arg = signal arg */
#define SWP_R_EMPTY_PATH_FD 32     /* execveat()/linkat(): AT_EMPTY_PATH in arg 4 makes fd_arg
				    * (not path_arg) the object */
#define SWP_R_OPEN_WRITE 64        /* an open: with write/create/truncate flags it is a write;
				    * fd_arg = the flags arg (SWP_NONE: always, as creat()) */
#define SWP_R_OPENAT2 128          /* openat2(): fd_arg points to struct open_how (flags first) */
#define SWP_R_ALSO_WRITE 256       /* the paths are also writes (rename, when write is held too) */
#define SWP_R_ANCESTOR 512         /* rename: path_arg also matches a directory above a rule's
				    * path (renaming it would move the protected path) */
#define SWP_R_MMAP 1024            /* mmap(): a write only with PROT_WRITE and MAP_SHARED */
#define SWP_R_MPROTECT 2048        /* mprotect(): PROT_WRITE on a shared mapping of a file */
#define SWP_R_AT 4096              /* path_arg/path2_arg are relative to the dirfd in the
				    * argument just before each (the *at() calls); else the cwd */
#define SWP_R_SENDTO 8192          /* sendto(): the address is arg 4, its length arg 5 */
#define SWP_R_SENDMSG 16384        /* sendmsg(): the address is in the struct msghdr (arg 1) */
#define SWP_R_SENDMMSG 32768       /* sendmmsg(): in each of the vlen (arg 2) struct mmsghdr */

/* swp_denial.rule for a reactive denial that compared no rule: the argument could not be
 * checked (unreadable, or longer than SWP_PATH_MAX once joined to the cwd), so it is denied */
#define SWP_RULE_UNCHECKED 254
/* swp_denial.nr of a reactive denial of an io_uring submission: this bit | the opcode */
#define SWP_NR_URING 0x10000

#define SWP_EV_DENIAL 16           /* swp_denial.type (outside the tracer's SW_EV_*) */
#define SWP_NONE 255

/* Load-time configuration (the program's .rodata.cfg). */
struct swp_config {
	uint32_t mode;            /* SW_TARGET_PID or SW_TARGET_CGROUP */
	uint32_t audit_only;
	uint32_t target_cgroup_level;
	uint32_t kill_untracked;  /* a tier that sees only "targets" (cgroup) is in use: kill a
				   * process "targets" could not take at its first syscall */
	uint64_t target_cgroup;
};

/* One 'protect' rule: path is NUL-terminated, len excludes the NUL, no trailing '/'
 * (except "/" itself). */
struct swp_path_rule {
	uint32_t ops;          /* bit mask of SWP_OP_* */
	uint32_t len;
	char path[SWP_PATH_MAX];
};

/* The policy (array map "rules"), written by userspace before attach: one entry per phase
 * (entry 0 only for a policy without phases), each the phase's rules in full. Path rule i is
 * the same path in every entry (its ops may be 0 in a phase that does not protect it). */
struct swp_rules {
	uint32_t block;        /* ops denied everywhere */
	uint32_t path_ops;     /* union of the path rules' ops */
	uint32_t npaths;
	uint32_t reactive;     /* ops the reactive tier holds */
	uint8_t tier[SWP_OPS]; /* SWP_TIER_* per op */
	struct swp_path_rule paths[SWP_MAX_PATHS];
	char phase[SWP_PHASE_NAME]; /* the phase's name ("" without phases) */
};

/* Which entry of "rules" every check reads (array map "phase", one entry). `swatch policy
 * phase` switches by one update of this value; ids are below 256, so the update changes one
 * byte of `current` and no check can see a mix of two phases. seq/previous/time_ns say
 * what the last switch was, for watchers (never read by a check). */
struct swp_phase_state {
	uint32_t current;         /* index into "rules" */
	uint32_t previous;        /* the phase before the last switch */
	uint64_t seq;             /* switches since load */
	uint64_t time_ns;         /* CLOCK_REALTIME of the last switch (or of the load) */
	uint64_t ktime_ns;        /* CLOCK_MONOTONIC of the same */
};

/* Reactive tier: per syscall number (array map "reactive"). */
struct swp_syscall {
	uint8_t op;
	uint8_t path_arg;      /* arg index of a user path, SWP_NONE if none */
	uint8_t path2_arg;
	uint8_t fd_arg;        /* arg index of an fd whose file is the object, SWP_NONE if none */
	uint16_t flags;        /* SWP_R_* */
	uint8_t pad[2];
};

/* One denial (own ring buffer "denials"): the tracer's record header, then the denial. */
struct swp_denial {
	struct sw_event_hdr hdr;  /* hdr.type = SWP_EV_DENIAL */
	uint8_t op;
	uint8_t tier;
	uint8_t action;
	uint8_t rule;          /* index of the path rule, or SWP_RULE_BLOCK */
	uint8_t target_kind;
	uint8_t trunc;
	uint16_t target_len;
	uint32_t nr;           /* the syscall (reactive tier), SWP_NR_URING | opcode for an io_uring
				* submission, else 0xffffffff */
	uint32_t pad;
	int64_t aux;
	int64_t aux2;
	char target[SWP_PATH_MAX];
};

/* Per-CPU counts (array map "counts", one entry). */
struct swp_counts {
	uint64_t ops[SWP_OPS];          /* denials per op */
	uint64_t rules[SWP_MAX_PATHS];  /* denials per path rule */
	uint64_t emitted;
	uint64_t dropped;               /* denial records lost (ring full): counted anyway */
	uint64_t untracked;             /* children "targets" could not take (--max-pids) */
	uint64_t killed_untracked;      /* of those, killed at their first syscall (fail closed) */
	uint64_t unmarked;              /* children that could not even be marked (no memory):
					 * their parent was killed instead */
};

/* What was loaded (array map "meta", one entry). */
struct swp_meta {
	uint32_t version;
	uint32_t mode;
	uint32_t target_pid;
	uint32_t audit_only;
	uint32_t loader_pid;
	uint32_t pad;
	uint64_t load_time_ns;
	uint64_t target_cgroup;
	uint64_t links;           /* bit i: enforcer.LINK_NAMES[i] is pinned; this map is pinned
				     last, as the completion marker */
	char policy[64];
	char target_label[64];
	uint32_t max_pids;              /* max_entries of "targets" */
	uint32_t nphases;               /* phases the policy defines (0: none) */
};
/* SW_CDEF_END */

#endif /* SWATCH_POLICY_H */
