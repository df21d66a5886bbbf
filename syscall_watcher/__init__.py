"""swatch: an eBPF syscall watcher for AI agents and containers."""

__version__ = "0.1.0"
