"""What to watch: pids and process trees, containers."""
