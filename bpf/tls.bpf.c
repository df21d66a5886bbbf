// SPDX-License-Identifier: GPL-2.0
/* swatch TLS plaintext (`--tls`): uprobes on the TLS library functions the traced processes
 * call (OpenSSL 3 SSL_write/SSL_read and their _ex forms, GnuTLS gnutls_record_send/recv),
 * attached per library file for every process (a uprobe on an inode fires wherever the file
 * is mapped, now or later) and filtered here to the tracer's targets. The buffer is taken at
 * entry, the length at return; the plaintext goes out in chunks of SW_TLS_CHUNK bytes. The
 * socket is the one the thread reads or writes inside the call (the syscalls tracepoints
 * below), else the last one seen for the same SSL object. The membership maps (pid_filter,
 * pid_range, pending) and the tracer's streaming state are the tracer's own, shared by fd. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tls.h"
#include "maps.bpf.h"
#include "event.bpf.h"
#include "task.bpf.h"
#include "targets.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000

const volatile struct sw_tls_config cfg SEC(".rodata.cfg") = {};

/* The tracer's maps (reused by fd at load). */
#include "membership.bpf.h"

/* Our own. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} tls_events SEC(".maps");

struct tls_call {
	u64 conn;
	u64 buf;
	u64 len_ptr;              /* SSL_*_ex: where the length is written */
	u64 cookie;
	struct sw_tls_sock sock;
};

/* The calls in flight, by thread (pid_tgid). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, u64);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

/* The last socket seen inside a call, by SSL object (for calls served from its buffer). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, u64);
	__type(value, struct sw_tls_sock);
} tls_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sw_tls_counters);
} tls_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sw_tls_event);
} tls_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} call_seq SEC(".maps");

/* Is the current task traced? The tracer's test (bpf/watcher.bpf.c traced()), on its maps. */
static __always_inline bool traced(u64 pid_tgid)
{
	u32 tgid = pid_tgid >> 32;
	struct sw_task *p;

	if (cfg.target.mode == SW_TARGET_PID) {
		struct sw_pid_range *r = bpf_map_lookup_elem(&pid_range, &zero);

		if (!r || tgid < r->lo || tgid > r->hi)
			return false;
		p = task_mark(&pending, bpf_get_current_task_btf());
		if (p)
			return !p->excluded;
		return tgid_listed(&pid_filter, tgid);
	}
	switch (cfg.target.mode) {
	case SW_TARGET_UID:
		if ((u32)bpf_get_current_uid_gid() != cfg.target.target_uid)
			return false;
		break;
	case SW_TARGET_CGROUP:
		if (!in_cgroup_tree(cfg.target.target_cgroup, cfg.target.target_cgroup_level))
			return false;
		break;
	case SW_TARGET_COMM: {
		char comm[SW_TASK_COMM_LEN];

		bpf_get_current_comm(comm, sizeof(comm));
		for (int i = 0; i < SW_TASK_COMM_LEN; i++) {
			if (comm[i] != cfg.target.target_comm[i])
				return false;
			if (!comm[i])
				break;
		}
		break;
	}
	default:
		break;
	}
	p = task_mark(&pending, bpf_get_current_task_btf());
	return !p || !p->excluded;
}

static __always_inline bool streaming(void)
{
	struct sw_state *st = bpf_map_lookup_elem(&state, &zero);

	return st && st->streaming;
}

/* uprobe at the entry of SSL_write(ssl, buf, num), SSL_write_ex(ssl, buf, num, &written),
 * SSL_read(_ex), gnutls_record_send/recv(session, data, size): the cookie says which. */
SEC("uprobe")
int BPF_KPROBE(sw_tls_enter, void *conn, void *buf, u64 num, void *len_ptr)
{
	u64 id = bpf_get_current_pid_tgid();
	struct tls_call call = {};

	if (!streaming() || !traced(id))
		return 0;
	call.conn = (u64)conn;
	call.buf = (u64)buf;
	call.cookie = bpf_get_attach_cookie(ctx);
	call.len_ptr = (call.cookie & SW_TLS_CK_EX) ? (u64)len_ptr : 0;
	call.sock.fd = -1;
	if (bpf_map_update_elem(&tls_calls, &id, &call, BPF_ANY))
		count_one(&tls_counters, struct sw_tls_counters, no_room);
	return 0;
}

/* The peer of the socket open as fd (family 0 if fd is not a socket). */
static __always_inline void socket_of(u64 fd, struct sw_tls_sock *s)
{
	struct file *f = current_fd_file(fd);
	struct socket *sock;
	struct sock *sk;
	u16 family;

	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return;
	sock = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	s->fd = fd;
	s->family = family;
	s->sock_type = BPF_CORE_READ(sk, sk_type);
	s->fd_from = SW_TLS_FD_CALL;
	if (family == AF_INET) {
		u32 a = BPF_CORE_READ(sk, __sk_common.skc_daddr);

		__builtin_memcpy(s->addr, &a, 4);
		s->port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&s->addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		s->port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	}
}

/* A read/write-family syscall: inside a TLS call, its fd is the call's socket. */
static __always_inline int socket_call(u64 fd)
{
	u64 id = bpf_get_current_pid_tgid();
	struct tls_call *call = bpf_map_lookup_elem(&tls_calls, &id);

	if (!call || call->sock.fd >= 0)
		return 0;
	socket_of(fd, &call->sock);
	return 0;
}

#define SOCKET_CALL(name)                                                        \
	SEC("tp/syscalls/sys_enter_" #name)                                      \
	int sw_tls_##name(struct trace_event_raw_sys_enter *ctx)                 \
	{                                                                        \
		return socket_call(ctx->args[0]);                                \
	}

SOCKET_CALL(write)
SOCKET_CALL(read)
SOCKET_CALL(sendto)
SOCKET_CALL(recvfrom)
SOCKET_CALL(sendmsg)
SOCKET_CALL(recvmsg)
SOCKET_CALL(writev)
SOCKET_CALL(readv)

SEC("uretprobe")
int BPF_KRETPROBE(sw_tls_exit, long ret)
{
	u64 id = bpf_get_current_pid_tgid();
	struct tls_call *call = bpf_map_lookup_elem(&tls_calls, &id);
	struct sw_tls_counters *c;
	struct sw_tls_event *ev;
	u64 *seq;
	u32 len = 0, captured, op;
	u64 cookie;

	if (!call)
		return 0;
	cookie = call->cookie;
	if (cookie & SW_TLS_CK_EX) {
		size_t n = 0;

		if ((int)ret == 1 && call->len_ptr)
			bpf_probe_read_user(&n, sizeof(n), (void *)call->len_ptr);
		len = n;
	} else if (cookie & SW_TLS_CK_LONG) {
		len = ret > 0 ? ret : 0;
	} else {
		len = (int)ret > 0 ? (int)ret : 0;
	}
	ev = bpf_map_lookup_elem(&tls_scratch, &zero);
	c = bpf_map_lookup_elem(&tls_counters, &zero);
	seq = bpf_map_lookup_elem(&call_seq, &zero);
	if (!len || !ev || !c || !seq)
		goto out;
	op = (cookie & SW_TLS_CK_READ) ? SW_TLS_READ : SW_TLS_WRITE;
	fill_hdr(&ev->hdr, SW_EV_TLS, id);
	ev->conn = call->conn;
	ev->call = ++*seq;
	ev->len = len;
	captured = len < cfg.capture_bytes ? len : cfg.capture_bytes;
	ev->captured = captured;
	ev->op = op;
	ev->cookie = cookie;
	if (call->sock.family) {
		ev->sock = call->sock;
		bpf_map_update_elem(&tls_conns, &call->conn, &call->sock, BPF_ANY);
	} else {
		struct sw_tls_sock *known = bpf_map_lookup_elem(&tls_conns, &call->conn);

		if (known) {
			ev->sock = *known;
			ev->sock.fd_from = SW_TLS_FD_CONN;
		} else {
			__builtin_memset(&ev->sock, 0, sizeof(ev->sock));
			ev->sock.fd = -1;
		}
	}
	__sync_fetch_and_add(&c->calls[op & 1], 1);
	if (len > captured)
		__sync_fetch_and_add(&c->cut_bytes[op & 1], len - captured);
	for (int i = 0; i < SW_TLS_MAX_CHUNKS; i++) {
		u32 off = i * SW_TLS_CHUNK;
		u32 n;

		if (off >= captured)
			break;
		n = captured - off;
		if (n > SW_TLS_CHUNK)
			n = SW_TLS_CHUNK;
		n &= 0x1fff;
		if (n > SW_TLS_CHUNK)
			break;
		ev->offset = off;
		ev->data_len = n;
		if (bpf_probe_read_user(ev->data, n, (void *)(call->buf + off))) {
			__sync_fetch_and_add(&c->read_failed[op & 1], 1);
			continue;
		}
		ev->hdr.size = offsetof(struct sw_tls_event, data) + n;
		__sync_fetch_and_add(&c->emitted[op & 1], 1);
		if (bpf_ringbuf_output(&tls_events, ev, offsetof(struct sw_tls_event, data) + n, 0))
			__sync_fetch_and_add(&c->dropped[op & 1], 1);
	}
out:
	bpf_map_delete_elem(&tls_calls, &id);
	return 0;
}
