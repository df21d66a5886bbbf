"""swatch's benchmark harness: swatch vs strace, perf trace, bpftrace and libbpf-tools."""
