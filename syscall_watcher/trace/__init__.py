"""Tracing: load the tracer, stream its events, summarise its counters, run a command traced."""
