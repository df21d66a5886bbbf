/* Shared between bpf/watcher.bpf.c and the cffi binding (syscall_watcher/_build.py).
 * Plain C, fixed-width types only: cffi's parser reads everything between the
 * SW_CDEF_BEGIN / SW_CDEF_END markers, and the C compiler checks that both sides
 * agree on every offset when the extension is built. */
#ifndef SWATCH_WATCHER_H
#define SWATCH_WATCHER_H

#include "common.h" /* SW_TASK_COMM_LEN, SW_MAX_SYSCALLS, SW_TARGET_*, struct sw_event_hdr */

/* SW_CDEF_BEGIN */
#define SW_PATH_MAX 256
#define SW_ARGV_MAX 384
#define SW_ADDR_MAX 112
#define SW_HIST_BUCKETS 32
#define SW_ANCESTRY_MAX 8  /* parents walked at exec time */
#define SW_NONE 255

/* Event types: the first field of every ring-buffer record. */
#define SW_EV_SYSCALL 1
#define SW_EV_EXEC 2
#define SW_EV_FORK 3
#define SW_EV_EXIT 4
#define SW_EV_URING 5   /* an io_uring operation: a struct sw_syscall_event, nr = the opcode */
#define SW_EV_TYPES 6

/* struct sw_syscall_info.flags */
#define SW_SC_ENABLED 1     /* in the filter profile: emit events */
#define SW_SC_BYTES_IN 2    /* a positive return value counts as bytes read */
#define SW_SC_BYTES_OUT 4   /* a positive return value counts as bytes written */
#define SW_SC_FD_AT_ENTER 8 /* resolve the fd at sys_enter (close: gone by exit) */
#define SW_SC_ADDRLEN_PTR 16 /* addrlen arg is a pointer to an int (accept) */
#define SW_SC_EXEC 32       /* execve/execveat: success reported by the EXEC event */
#define SW_SC_CLONE3 64     /* clone3: read the flags from user memory */
#define SW_SC_FAILED_ONLY 128 /* emit the event only when the call failed (--failed) */

/* struct sw_syscall_event.flags / sw_exec_event.flags */
#define SW_F_PATH_TRUNC 1
#define SW_F_PATH2_TRUNC 2
#define SW_F_FDNAME_TRUNC 4
#define SW_F_ARGV_TRUNC 8
#define SW_F_FD_SOCKET 16
#define SW_F_URING_SQPOLL 32 /* io_uring: submitted by the ring's SQPOLL kernel thread */
#define SW_F_URING_FIXED 64  /* io_uring: the fd is an index into the ring's registered files */

/* What sw_syscall_event.fd_kind says about the fd named by the fd arg. */
#define SW_FD_NONE 0
#define SW_FD_FILE 1
#define SW_FD_TCP 2
#define SW_FD_UDP 3
#define SW_FD_UNIX 4
#define SW_FD_PIPE 5
#define SW_FD_SOCKET 6  /* another socket family */
#define SW_FD_ANON 7    /* anon inode other than the suppressed ones */
#define SW_FD_BAD 8     /* not an open fd */

/* A record sent this long after the last wakeup wakes the consumer (output(), watcher.bpf.c):
 * the first record after a quiet spell is read at once, not at the consumer's poll timeout. */
#define SW_WAKEUP_GAP_NS 10000000ULL

/* Load-time configuration (the program's only .rodata variable); mode: SW_TARGET_*. */
struct sw_config {
	uint32_t mode;
	uint32_t follow_children;
	uint32_t target_uid;
	uint32_t target_cgroup_level; /* depth of target_cgroup below the v2 root */
	uint32_t wakeup_bytes;   /* wake the consumer every this many bytes sent (a power of two) */
	uint32_t pid_slots;      /* slots in pid_stats (--stats-slots; 0: none) */
	uint32_t nr_cpus;        /* possible CPUs: the copies of a per-CPU value */
	uint32_t no_latency;     /* --no-latency: sw_sys_enter is not loaded; sw_sys_exit counts
				  * alone, with no clock read (sw_sys_exit, watcher.bpf.c) */
	uint64_t target_cgroup;
	char target_comm[SW_TASK_COMM_LEN];
};

/* Per-syscall decoding rules, indexed by syscall number (from the data files). */
struct sw_syscall_info {
	uint8_t flags;
	uint8_t fd_arg;       /* arg index of an fd to name, or SW_NONE */
	uint8_t path_arg;     /* arg index of a user path string, or SW_NONE */
	uint8_t path2_arg;
	uint8_t addr_arg;     /* arg index of a struct sockaddr pointer, or SW_NONE */
	uint8_t addrlen_arg;
	uint8_t empty_path_fd_arg; /* fd arg to name when the path is "" (AT_EMPTY_PATH), or SW_NONE */
	uint8_t detect;       /* SW_DT_*: what swatch detect counts for this syscall */
};

/* struct sw_syscall_info.detect (swatch detect's in-kernel counters, docs/detect.md) */
#define SW_DT_CONNECT 1     /* connect(fd, addr, len): counted by family and socket type */
#define SW_DT_DNS 2         /* a bytes-in call with its buffer in arg 1 (read, recvfrom, recvmsg):
			       while detect runs, what a socket whose peer port is 53 received is
			       copied to the "dns_answers" ring */
#define SW_DT_DNS_MSG 4     /* arg 1 is a struct user_msghdr (recvmsg): its first iovec, msg_name */
#define SW_DT_DNS_FROM 8    /* arg 4 is the source sockaddr (recvfrom on an unconnected socket) */
#define SW_DT_FD_CLOSE 16   /* close(fd): while detect runs, forget fd's class (struct sw_fd_classes) */
#define SW_DT_FD_RESET 32   /* dup2, dup3, close_range, execve(at): forget every fd's class */
#define SW_DT_DNS_MMSG 64   /* recvmmsg: arg 1 is a struct mmsghdr array, ret the messages */
#define SW_DT_DNS_IOV 128   /* readv: arg 1 is a struct iovec array (its first one) */
#define SW_DNS_PORT 53
#define SW_DNS_MAX 512      /* bytes of a DNS answer kept (the classic UDP message size) */
#define SW_DNS_HEADER 12    /* a DNS message's fixed header: shorter reads are not answers */
#define SW_DNS_MMSG_MAX 4   /* recvmmsg: the messages of one call looked at */
#define SW_DNS_SLOTS 64     /* the ring "dns_answers": answer n goes to slot n % SW_DNS_SLOTS */
/* Array map "detect" (uint64_t values). detect's file-bytes counters and the DNS ring work only
 * while a detect run holds the lease: its userspace writes SW_DETECT_LEASE = now + a few
 * seconds (CLOCK_MONOTONIC, as bpf_ktime_get_ns) and renews it while it observes, so a
 * `summary`-only tracer pays nothing for them, and a detect that is killed stops them within
 * the lease on its own. SW_DETECT_DNS_NEXT: DNS answers captured since load (only BPF writes). */
#define SW_DETECT_LEASE 0
#define SW_DETECT_DNS_NEXT 1
/* SW_DETECT_EPOCH: the lease's number, bumped by detect's userspace each time it takes a lease
 * that had run out (0: never taken). The fd classes a process learned are good only within one
 * epoch: while no lease is held nobody watches the closes that would make them stale. */
#define SW_DETECT_EPOCH 2
#define SW_DETECT_KEYS 3
/* detect's per-process fd classes (array "fd_classes", one entry per pid_stats slot): what a
 * read/write under the lease found its fd to be, 2 bits an fd (SW_FDC_*) for the fds below
 * SW_FDC_CACHED, so the fd -> file -> inode walk runs once per fd, not once per call. */
#define SW_FDC_CACHED 256
#define SW_FDC_WORDS 8       /* SW_FDC_CACHED / 32: the words of bits */
#define SW_FDC_UNKNOWN 0    /* not looked at yet (or forgotten): walk, then remember */
#define SW_FDC_FILE 1       /* a regular file: its bytes are counted */
#define SW_FDC_OTHER 2      /* nothing detect counts: pipe, tty, device, unix socket, an inet
			       socket connected to a port other than 53 */
#define SW_FDC_WALK 3       /* an inet socket that may bring DNS answers (unconnected, or
			       connected to port 53): walked at every receive */
/* A process that exits sooner than this after its fork counts as short-lived (fork fan-out). */
#define SW_SHORT_LIVED_NS 5000000000ULL
#define SW_DT_FILE_NAME 32  /* bytes of a written file's name kept as evidence */

/* io_uring operations (SW_EV_URING): opcodes below SW_URING_OPS are looked up in the array map
 * "uring_info" (filled from syscall_watcher/kernel/uring.py) and counted in "uring_stats". */
#define SW_URING_OPS 64
/* struct sw_uring_info.flags: SW_SC_ENABLED, SW_SC_BYTES_IN, SW_SC_BYTES_OUT and
 * SW_SC_FAILED_ONLY mean what they mean for a syscall; and: */
#define SW_UR_FD 256         /* the sqe's fd names a file (the kernel's needs_file) */

struct sw_uring_info {
	uint16_t flags;
	uint8_t detect;      /* SW_DT_* */
	uint8_t pad;
};

/* SW_TARGET_PID: every traced tgid lies in [lo, hi] (array map "pid_range"), so most
 * untraced tasks are turned away by two compares before any hash lookup. */
struct sw_pid_range {
	uint32_t lo;
	uint32_t hi;
};

/* Runtime state, written by userspace (array map "state", one entry). */
struct sw_state {
	uint32_t streaming;     /* a consumer is attached: emit events */
	uint32_t consumer_pid;
	uint32_t last_step;     /* --agent: the last step id a consumer of this load gave (the
				   next consumer's ids go on from it); only userspace uses it */
};

/* One finished syscall. data[] holds, in order: path, path2, fd name (NUL
 * terminated, lengths below, 0 = absent), then addr_len bytes of sockaddr. */
struct sw_syscall_event {
	struct sw_event_hdr hdr;
	int64_t ret;
	uint64_t duration_ns;
	uint64_t args[6];
	uint64_t aux;           /* clone3: the flags read from struct clone_args */
	uint32_t nr;
	uint16_t flags;
	uint8_t fd_kind;
	uint8_t pad;
	uint16_t path_len;
	uint16_t path2_len;
	uint16_t fdname_len;
	uint16_t addr_len;
	uint8_t data[3 * SW_PATH_MAX + SW_ADDR_MAX];
};

/* One process above the one that exec'd (read from task->real_parent at exec time). */
struct sw_ancestor {
	uint32_t pid;
	char comm[SW_TASK_COMM_LEN];
};

/* A successful exec: the parent chain (the parent first), then in data[] the filename,
 * then argv as NUL-separated strings. */
struct sw_exec_event {
	struct sw_event_hdr hdr;
	uint32_t argc;
	uint16_t flags;
	uint16_t filename_len;
	uint16_t argv_len;
	uint16_t ancestry_len;  /* entries used in ancestry[] */
	uint16_t pad[2];
	struct sw_ancestor ancestry[SW_ANCESTRY_MAX];
	uint8_t data[SW_PATH_MAX + SW_ARGV_MAX];
};

struct sw_fork_event {
	struct sw_event_hdr hdr;
	uint32_t child_pid;
	uint32_t pad;
};

struct sw_exit_event {
	struct sw_event_hdr hdr;
	int32_t exit_code;      /* exit status, or -1 when killed by a signal */
	int32_t signal;         /* the fatal signal, 0 if none */
};

/* Cumulative per-syscall statistics (per-CPU array indexed by nr). */
struct sw_stat {
	uint64_t count;
	uint64_t errors;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t total_ns;
	uint64_t hist[SW_HIST_BUCKETS]; /* log2(duration ns) buckets */
};

/* detect: what the fds of the process holding a pid_stats slot are (SW_FDC_*, 2 bits an fd).
 * Started afresh when any of epoch, files, gen differs from the current one. */
struct sw_fd_classes {
	uint64_t epoch;         /* detect[SW_DETECT_EPOCH] the classes were learned in */
	uint64_t files;         /* the file table (struct files_struct *) they describe */
	uint64_t forgets;       /* bumped by every forget: a class learned across one is dropped */
	uint32_t gen;           /* the slot's generation (struct sw_pid_stat.gen) */
	uint32_t pad;
	uint64_t bits[SW_FDC_WORDS];
};

/* Cumulative per-process statistics: a live process's in its slot of pid_stats (a per-CPU
 * array, one copy per CPU), an exited process's summed over CPUs in pid_done. */
struct sw_pid_stat {
	uint64_t count;
	uint64_t errors;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t total_ns;
	uint64_t cgroup_id;     /* the process's cgroup when first seen */
	uint64_t comm_ns;       /* when comm was set (first syscall, then each exec): the CPU
				 * slot with the newest wins, so a child shows its exec'd name */
	char comm[SW_TASK_COMM_LEN];
	/* swatch detect's counters (docs/detect.md), per process like the rest */
	uint64_t execs;          /* successful execs (sched_process_exec) */
	uint64_t forks;          /* new processes this one forked (not threads) */
	uint64_t short_lived;    /* 1 once the process exited within SW_SHORT_LIVED_NS of its fork */
	uint64_t exited;         /* 1 once the process exited */
	uint64_t file_bytes_in;  /* bytes read from regular files (fd arg 0 of a bytes-in call) */
	uint64_t file_bytes_out; /* bytes written to regular files */
	uint64_t connects_tcp;   /* connect() to AF_INET/AF_INET6 stream sockets, 0 or EINPROGRESS */
	uint64_t connects_udp;   /* ... datagram sockets (DNS lookups connect their UDP socket) */
	uint64_t connects_unix;  /* AF_UNIX */
	uint64_t connects_other; /* every other family */
	uint32_t sid;            /* session id when first seen: swatch detect --all groups by it */
	uint32_t ppid;           /* parent when first seen */
	uint32_t gen;            /* pid_stats: the slot's generation this copy belongs to */
	uint32_t pad;
};

/* pid_slot (hash, tgid -> this): where a live process is counted. A slot is taken at the
 * process's first syscall (or exec, fork) and given back at its last thread's exit, once its
 * counts are summed into pid_done; every CPU's copy then moves to the next generation, so a
 * reader holding (slot, gen) can tell the slot has changed hands. */
struct sw_pid_slot {
	uint32_t slot;          /* index in pid_stats */
	uint32_t gen;           /* the slot's generation while this process holds it */
	uint64_t inst;          /* this process's number (1, 2, ... per load): its pid_done key */
	uint32_t folding;       /* set by the one exit that sums it into pid_done */
	uint32_t pad;
};

/* pid_done's key: an exited process (inst from its pid_slot entry), or a process counted
 * there while it runs because no slot was free (inst 0: CPUs share it, atomic adds). */
struct sw_pid_key {
	uint32_t tgid;
	uint32_t pad;
	uint64_t inst;
};

/* Slot allocation (array "pid_alloc", one entry): slots never used yet are taken in order
 * (fresh), given-back ones from the queue "free_slots" first. */
struct sw_pid_alloc {
	uint64_t fresh_used;    /* slots 0 .. fresh_used-1 have been taken at least once */
	uint64_t next_inst;
};

/* sw_task.pid_slot: 1 + the process's slot; these two say it has none. */
#define SW_SLOT_UNKNOWN 0
#define SW_SLOT_SHARED 0xffffffff  /* counted in pid_done (tgid, inst 0) */

/* swatch detect's evidence: remote endpoints connected to (hash "endpoints"). */
struct sw_endpoint_key {
	uint32_t sid;
	uint16_t family;        /* AF_INET / AF_INET6 */
	uint16_t port;          /* host order */
	uint8_t addr[16];       /* 4 bytes used for AF_INET */
};

/* swatch detect's evidence: regular files written (hash "files_written"). */
struct sw_file_key {
	uint32_t sid;
	uint32_t dev;
	uint64_t ino;
};

/* swatch detect's evidence: connects per remote endpoint (hash "endpoints"). */
struct sw_endpoint_stat {
	uint64_t connects;
	uint64_t last_ns;       /* bpf_ktime_get_ns() of the latest connect */
};

/* One DNS answer a traced process received (array "dns_answers", a ring of SW_DNS_SLOTS).
 * seq_begin is written first and seq_end last (both answer number + 1): a slot read while
 * being overwritten has them differ and is skipped. */
struct sw_dns_answer {
	uint64_t seq_begin;
	uint64_t ts_ns;         /* bpf_ktime_get_ns() at the end of the receiving call */
	uint32_t tgid;
	uint32_t sid;
	uint32_t len;           /* bytes received; data holds the first SW_DNS_MAX */
	uint32_t copied;        /* bytes in data */
	uint8_t data[SW_DNS_MAX];
	uint64_t seq_end;
};

struct sw_file_stat {
	uint64_t bytes;
	uint64_t writes;
	char name[SW_DT_FILE_NAME]; /* the file's last path component (its dentry name) */
};

/* Per-CPU event accounting: emitted == delivered + dropped. The rest count membership
 * inserts that failed: nothing the kernel could not record is lost silently. */
struct sw_counters {
	uint64_t emitted[SW_EV_TYPES];
	uint64_t dropped[SW_EV_TYPES];
	uint64_t pid_filter_full;  /* children not listed in pid_filter (traced all the same) */
	uint64_t pid_stats_full;   /* processes not counted per process (pid_done full) */
	uint64_t pid_slots_full;   /* processes counted in pid_done as they ran: no slot was free */
	uint64_t pid_slots_kept;   /* exited processes left in their slot: pid_done was full */
	uint64_t untracked;        /* children that could not be marked at fork: not traced */
	uint64_t evidence_full;    /* detect evidence not recorded (endpoints/files_written full) */
	uint64_t uring_submitted;  /* io_uring requests of traced processes seen at submission */
	uint64_t uring_completed;  /* ... of those, seen completing (the rest are in flight, or
				    * ended without a completion: IOSQE_CQE_SKIP_SUCCESS, or
				    * multishot completions after the first) */
	uint64_t wakeups;          /* records sent with BPF_RB_FORCE_WAKEUP (output()) */
};

/* Per-thread state (task-local storage "pending"): the syscall in flight and the thread's
 * membership. Userspace writes it (key: a pidfd) to exclude swatch's own processes. */
struct sw_task {
	uint64_t ts;            /* 0 = no syscall in flight */
	uint64_t args[8];       /* 6 used; 8 so that an index masked with 7 stays inside */
	uint32_t nr;
	uint32_t args_ok;       /* args[] were read at sys_enter (a consumer was streaming) */
	uint32_t excluded;      /* swatch's own: never traced, nor its children and threads */
	uint32_t stat_missed;   /* pid_done had no room for this process (counted once) */
	uint32_t pid_slot;      /* 1 + its process's slot in pid_stats, or SW_SLOT_* */
	uint32_t detect_args;   /* args[0], [1] (and [4]) were read for detect at sys_enter */
	uint32_t skip_exit;     /* --no-latency: the next sys_exit ends a call begun before the
				 * tracer was there (`swatch run`'s held child): not counted */
	uint32_t pad;
};

/* What was loaded, for `status` (array map "meta", one entry). */
struct sw_meta {
	uint32_t version;
	uint32_t mode;
	uint32_t target_pid;
	uint32_t target_uid;
	uint32_t follow_children;
	uint32_t loader_pid;
	uint64_t load_time_ns;    /* CLOCK_REALTIME */
	uint64_t target_cgroup;
	uint64_t ring_size;
	uint64_t links;           /* bit i: the i-th link swatch pins; written just before this
				     map is pinned, last: no meta pin = an unfinished load */
	char target_comm[SW_TASK_COMM_LEN];
	char profile[32];
	char target_label[64];
	char cgroup_path[256];   /* SW_TARGET_CGROUP: the v2 cgroup directory */
	uint32_t max_pids;       /* max_entries of pid_filter and pid_done */
	uint32_t pid_slots;      /* slots in pid_stats (--stats-slots) */
	uint32_t flags;          /* SW_META_* */
	uint32_t pad;
};
/* struct sw_meta.flags */
#define SW_META_NO_LATENCY 1 /* loaded with --no-latency: no sys_enter, latency not measured */
/* SW_CDEF_END */

#endif /* SWATCH_WATCHER_H */
