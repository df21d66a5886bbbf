"""The kernel side: the libbpf binding (cffi), the ring consumer and formatter shim, the
pinned-component lifecycle, the syscall table."""
