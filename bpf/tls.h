/* Shared between bpf/tls.bpf.c (the TLS plaintext uprobes, `--tls`) and the cffi binding.
 * Plain C, fixed-width types only: cffi's parser reads everything between the
 * SW_CDEF_BEGIN / SW_CDEF_END markers, and the C compiler checks both sides agree. */
#ifndef SWATCH_TLS_H
#define SWATCH_TLS_H

#include "watcher.h" /* struct sw_event_hdr, struct sw_config */

/* SW_CDEF_BEGIN */
#define SW_EV_TLS 20            /* sw_tls_event.hdr.type (outside SW_EV_* and SWP_EV_*) */
#define SW_TLS_CHUNK 4096       /* plaintext bytes per record; a call's capture is cut in chunks */
#define SW_TLS_MAX_CHUNKS 16    /* at most 64 KiB of one call's plaintext (--tls-bytes) */

/* sw_tls_event.op, and the index of sw_tls_counters' arrays */
#define SW_TLS_WRITE 0
#define SW_TLS_READ 1
#define SW_TLS_OPS 2

/* What the uprobe's cookie says about the function it is attached to. */
#define SW_TLS_CK_READ 1        /* a read (else a write) */
#define SW_TLS_CK_EX 2          /* SSL_*_ex: the length is written through arg 4; ret 1 = ok */
#define SW_TLS_CK_LONG 4        /* returns ssize_t (GnuTLS), else int */
#define SW_TLS_CK_GNUTLS 8      /* the library is GnuTLS (else OpenSSL) */

/* sw_tls_event.fd_from: how the fd was found */
#define SW_TLS_FD_NONE 0        /* unknown (a memory BIO: no socket call inside, none seen) */
#define SW_TLS_FD_CALL 1        /* the socket read/write the thread made inside this call */
#define SW_TLS_FD_CONN 2        /* the last one seen inside a call on the same SSL object */

/* Load-time configuration (.rodata.cfg): who is traced (as the tracer's), how much to copy. */
struct sw_tls_config {
	struct sw_config target;
	uint32_t capture_bytes;   /* plaintext bytes copied per call (--tls-bytes) */
	uint32_t pad;
};

/* The socket found for a call (the peer; family 0 = not a socket). */
struct sw_tls_sock {
	int32_t fd;
	uint16_t family;          /* AF_INET / AF_INET6 / AF_UNIX */
	uint16_t port;            /* host order */
	uint16_t sock_type;       /* SOCK_STREAM, ... */
	uint8_t fd_from;          /* SW_TLS_FD_* */
	uint8_t pad;
	uint8_t addr[16];
};

/* One chunk of one call's plaintext: every chunk of a call carries the call's totals. */
struct sw_tls_event {
	struct sw_event_hdr hdr;  /* hdr.type = SW_EV_TLS */
	uint64_t conn;            /* the SSL * / gnutls_session_t: one per TLS connection */
	uint64_t call;            /* this call's number on this CPU (chunks of a call share it) */
	uint32_t len;             /* plaintext bytes the call moved */
	uint32_t captured;        /* bytes of it copied in all (min(len, capture_bytes)) */
	uint32_t offset;          /* where this chunk's data starts in the call's buffer */
	uint16_t data_len;        /* bytes in data[] */
	uint8_t op;               /* SW_TLS_WRITE / SW_TLS_READ */
	uint8_t cookie;           /* SW_TLS_CK_* of the function */
	struct sw_tls_sock sock;
	uint8_t data[SW_TLS_CHUNK];
};

/* Per-CPU accounting (array "tls_counters", one entry): emitted == delivered + dropped. */
struct sw_tls_counters {
	uint64_t calls[SW_TLS_OPS];     /* calls of traced threads that moved data */
	uint64_t emitted[SW_TLS_OPS];   /* records (chunks) sent */
	uint64_t dropped[SW_TLS_OPS];   /* records the ring had no room for */
	uint64_t cut_bytes[SW_TLS_OPS]; /* plaintext bytes beyond capture_bytes, not copied */
	uint64_t read_failed[SW_TLS_OPS]; /* chunks whose user memory could not be read */
	uint64_t no_room;               /* entries lost: the in-flight call table was full */
};
/* SW_CDEF_END */

#endif /* SWATCH_TLS_H */
