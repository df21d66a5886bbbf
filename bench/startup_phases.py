"""Where `swatch run --json --filter all -o /dev/null -- /bin/true`'s start-up time goes: marks
taken in-process (ms after the interpreter has started) around the imports, `run_command`,
`LoadedTracer.load`, `bpf_object__load` and the first event written; medians of N runs.

    flock /tmp/swatch-kernel.lock .venv/bin/python bench/startup_phases.py .venv/bin/python 9
"""
import json
import statistics
import subprocess
import sys
CODE = r'''
import time, sys, json
T0 = time.monotonic(); marks = {}
def mark(n):
    marks.setdefault(n, (time.monotonic() - T0) * 1000)
import syscall_watcher.cli as cli
mark("cli imported (typer, app)")
import syscall_watcher.trace.run as run_mod, syscall_watcher.trace.tracer as tr
import syscall_watcher.kernel.libbpf as lb, syscall_watcher.trace.stream as st
mark("run's modules imported")
orig_rc = run_mod.run_command
def rc(*a, **k):
    mark("run_command entered"); return orig_rc(*a, **k)
run_mod.run_command = rc
orig_load = tr.LoadedTracer.load.__func__
def load(cls, *a, **k):
    mark("LoadedTracer.load entered"); r = orig_load(cls, *a, **k); mark("LoadedTracer.load done (attached)"); return r
tr.LoadedTracer.load = classmethod(load)
orig_bl = lb.BpfObject.load
def bl(self):
    mark("bpf_object__load start"); orig_bl(self); mark("bpf_object__load end")
lb.BpfObject.load = bl
orig_pump = st.Streamer.pump
def pump(self, *a, **k):
    r = orig_pump(self, *a, **k)
    if self.out.lines: mark("first event written")
    return r
st.Streamer.pump = pump
import atexit
atexit.register(lambda: print("MARKS" + json.dumps(marks), file=sys.stderr))
sys.argv = ["swatch", "run", "--json", "--filter", "all", "-o", "/dev/null", "--", "/bin/true"]
cli.main()
'''
exe = sys.argv[1]; n = int(sys.argv[2])
runs = []
for _ in range(n):
    p = subprocess.run([exe, "-c", CODE], capture_output=True, text=True)
    line = [l for l in p.stderr.splitlines() if l.startswith("MARKS")][-1]
    runs.append(json.loads(line[5:]))
for k in runs[0]:
    print(f"{statistics.median(r[k] for r in runs):7.1f} ms  {k}")
