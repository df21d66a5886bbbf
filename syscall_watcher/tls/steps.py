"""`--agent`: steps — each tool call an LLM response asked for, tied to the processes spawned
for it and to what they did.

A step starts when an LLM response naming tool calls is seen in an agent process (the one that
read the response); the processes that agent (or its child) forks while the step is open
belong to the step, and so do their children; the agent's next LLM request closes it. Which
process is in which step is kept by the C formatter (shim/steps.c), so every JSON record of a
step's process carries ``"step": N``; this module numbers the steps, opens and closes them in
time order with the records (a callback on the LLM line, run when the merged stream writes
it), reads back the step processes' action records (exec, exit, files, connects) and sums each
step up — with the flags README's "Steps" section explains, each one a plain rule.

`run`/`watch` write every step's summary at the end of the stream (``records``); `serve`, which
has no end, writes each one once the step is over (``over``: closed by the agent's next request,
or its agent exited, and every process of the step exited) and the rest when it lets go of the
tracer (``StepSummaries``)."""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from syscall_watcher.kernel import libbpf
from syscall_watcher.tls.redact import redact_text, redact_value

SHELLS = {"sh", "bash", "dash", "zsh", "ash", "ksh", "busybox"}
DNS_PORT = 53
LIST_MAX = 200  # entries of each list kept in a step's record (the rest counted)
# Addresses remembered for the `connect` flag's "never connected to before": the ones most
# recently connected to (a connect refreshes its address); an older one is forgotten (counted),
# and a step connecting there again is its first connect again (README: Steps).
CONNECT_MEMORY = 4096
O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND = 0o1, 0o2, 0o100, 0o1000, 0o2000
_WORD_SPLIT = re.compile(r"[\s;|&()<>'\"=,`]+")
_CHANGES = {"DELETE", "RENAME", "MKDIR", "RMDIR", "LINK", "CHMOD"}


def startup_file(path: str) -> bool:
    """A dynamic loader's or locale start-up file (as the formatter's start-up folding)."""
    if not path.startswith("/"):
        return False
    if path.startswith("/etc/ld.so.") or path.startswith("/usr/lib/locale") or \
            path.startswith("/usr/share/locale/") or path == "/etc/locale.alias" or \
            "/gconv/" in path:
        return True
    base = path.rsplit("/", 1)[-1]
    return re.search(r"\.so(\.|$)", base) is not None


def _strings(value: Any) -> list[str]:
    """Every string and number in a tool call's arguments (keys left out)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if value is None or isinstance(value, bool):
        return []
    return [str(value)]


def render_args(arguments: Any) -> str:
    """``cmd="pytest -q", timeout=5`` — JSON values, ASCII only (nothing can reach the
    terminal raw)."""
    if isinstance(arguments, dict):
        return ", ".join(f"{k}={json.dumps(v, separators=(',', ':'))}"
                         for k, v in arguments.items())
    return json.dumps(arguments, separators=(",", ":"))


def render_calls(calls: list[dict[str, Any]]) -> str:
    return ", ".join(f"{json.dumps(c['name'])[1:-1]}({render_args(c['arguments'])})"
                     for c in calls)


class Named:
    """What a step's tool calls name: their argument strings, and the words in them (split
    as a shell would, each path's last component too)."""

    def __init__(self, calls: list[dict[str, Any]]) -> None:
        self.strings = [s for c in calls for s in _strings(c.get("arguments"))]
        self.text = "\n".join(self.strings)
        self.words: set[str] = set()
        for s in self.strings:
            for w in _WORD_SPLIT.split(s):
                if w:
                    self.words.add(w)
                    self.words.add(w.rstrip("/").rsplit("/", 1)[-1])

    def program(self, filename: str, argv: list[str]) -> bool:
        base = filename.rsplit("/", 1)[-1]
        if base in self.words or filename in self.words:
            return True
        # the shell a tool runs its command with: sh -c "<the command the call gave>"
        return base in SHELLS and len(argv) >= 3 and argv[1] == "-c" and \
            any(argv[2] == s or argv[2] in s for s in self.strings if s)

    def path(self, path: str) -> bool:
        return path in self.text or path.rstrip("/").rsplit("/", 1)[-1] in self.words

    def address(self, host: str, port: int) -> bool:
        return host in self.text or str(port) in self.words or \
            any(w.endswith(f":{port}") for w in self.words)


def _split_addr(addr: str) -> tuple[str, int] | None:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class _Ordered:
    """An ordered set (each entry with a value) whose first LIST_MAX entries are kept; each
    entry past them is counted once, remembered by its hash alone (str's 64-bit SipHash, keyed
    at random per process: two distinct entries meeting on one value, one in ~10^19 pairs,
    would be counted once)."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.past: set[int] = set()

    def add(self, item: str, value: Any = None) -> bool:
        """Put item in; True if it is new here (kept or counted)."""
        if item in self.items:
            return False
        if len(self.items) < LIST_MAX:
            self.items[item] = value
            return True
        h = hash(item)
        if h in self.past:
            return False
        self.past.add(h)
        return True

    @property
    def more(self) -> int:
        return len(self.past)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Step:
    """One step, summed up as its records come: every list keeps LIST_MAX entries and counts
    the rest, and each flag is decided when its action is seen — so what a list cannot keep
    is never what hides a flag, and a long step keeps a bounded amount (the hashes of the
    distinct paths and addresses past the lists aside: what counts each of them once)."""
    id: int
    agent_pid: int
    agent_comm: str
    time_ns: int
    tool_calls: list[dict[str, Any]]
    end_ns: int | None = None
    pids: dict[int, str] = field(default_factory=dict)      # listed: pid -> comm
    execs: list[dict[str, Any]] = field(default_factory=list)
    files_read: _Ordered = field(default_factory=_Ordered)
    files_written: _Ordered = field(default_factory=_Ordered)
    connects: _Ordered = field(default_factory=_Ordered)  # listed: addr -> "OK" or the error
    exits: list[dict[str, Any]] = field(default_factory=list)
    denied: int = 0
    agent_gone: bool = False  # its agent exited with the step open (no request will close it)
    live: set[int] = field(default_factory=set)        # its processes not seen exiting yet
    more: int = 0                                      # pids, execs and exits not listed
    connect_flagged: set[int] = field(default_factory=set)  # addresses flagged (hashes)
    flagged: dict[str, list[dict[str, str]]] = field(
        default_factory=lambda: {"exec": [], "write": [], "connect": []})
    flags_more: int = 0
    named: Named = field(init=False)

    def __post_init__(self) -> None:
        self.named = Named(self.tool_calls)

    def is_over(self) -> bool:
        """Closed (or its agent gone) and every process of it seen exiting."""
        if self.end_ns is None and not self.agent_gone:
            return False
        return not self.live

    # -- what its processes did (Steps._action), each flag decided as it is seen (README's
    # "Steps": the rules) ---------------------------------------------------------------------
    def saw(self, pid: int, comm: str) -> None:
        """A record of process pid (a spawn: comm ""). A listed process seen exiting is not
        live again; one past the list is forgotten at its exit (its pid, reused, is new)."""
        if pid in self.pids:
            if comm:
                self.pids[pid] = comm
            return
        if pid in self.live:
            return
        if len(self.pids) < LIST_MAX:
            self.pids[pid] = comm
        else:
            self.more += 1
        self.live.add(pid)

    def exited(self, entry: dict[str, Any]) -> None:
        self.live.discard(entry["pid"])
        self._list(self.exits, entry)

    def ran(self, entry: dict[str, Any]) -> None:
        if not self.named.program(entry["filename"], entry["argv"]):
            self._flag("exec", f"ran {entry['filename']}: not named in the tool call")
        self._list(self.execs, entry)

    def wrote(self, path: str) -> None:
        if self.files_written.add(path) and not path.startswith("/dev/") and \
                not self.named.path(path):
            self._flag("write", f"wrote {path}: not named in the tool call")

    def connected(self, addr: str, result: str, new: bool) -> None:
        """A connect to addr (result "OK" or the error; new: nothing had connected there
        before, as far as the bounded memory knows)."""
        if not self.connects.add(addr, result) and self.connects.items.get(addr, "OK") != "OK":
            self.connects.items[addr] = result  # listed: a later success wins
        hp = _split_addr(addr)
        if new and hp is not None and hp[1] != DNS_PORT and not self.named.address(*hp) and \
                hash(addr) not in self.connect_flagged:
            self.connect_flagged.add(hash(addr))
            self._flag("connect", f"connected to {addr}: not named in the tool call, never "
                                  "connected to before")

    def _list(self, entries: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        if len(entries) < LIST_MAX:
            entries.append(entry)
        else:
            self.more += 1

    def _flag(self, rule: str, detail: str) -> None:
        flags = self.flagged[rule]
        if len(flags) < LIST_MAX:
            flags.append({"rule": rule, "detail": detail})
        else:
            self.flags_more += 1

    def flags(self) -> list[dict[str, str]]:
        """What the step did that its tool calls did not name: by rule (exec, write, connect),
        each in the order seen, up to LIST_MAX of each."""
        return [f for rule in ("exec", "write", "connect") for f in self.flagged[rule]]

    def not_listed(self) -> int:
        return self.more + self.files_read.more + self.files_written.more + \
            self.connects.more + self.flags_more

    def record(self) -> dict[str, Any]:
        return {"type": "step", "time_ns": self.time_ns, "step": self.id, "event": "summary",
                "agent_pid": self.agent_pid, "agent_comm": self.agent_comm,
                "tool_calls": self.tool_calls, "end_ns": self.end_ns,
                "pids": [{"pid": p, "comm": c} for p, c in self.pids.items()],
                "execs": self.execs,
                "files_read": list(self.files_read), "files_written": list(self.files_written),
                "connects": [{"addr": a, "result": r} for a, r in self.connects.items.items()],
                "exits": self.exits, "denied": self.denied, "not_listed": self.not_listed(),
                "flags": self.flags()}


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


class StepIds(Protocol):
    """Where a tracer keeps the last step id given (trace.tracer.Session: its state map)."""

    def last_step(self) -> int: ...

    def set_last_step(self, step: int) -> None: ...


class Steps:
    """The steps of one stream: opened and closed by the LLM lines (TlsLines calls
    ``started``/``closed`` when the merged stream writes those lines), summed up from the C
    formatter's side buffer (``drain``). Step ids go on from the last one the tracer's
    ``ids`` keep (so a consumer attaching again to the same load gives new ids) and are kept
    there as they are given."""

    def __init__(self, json_lines: bool = False, ids: StepIds | None = None) -> None:
        self.json = json_lines
        self.ids = ids
        self.steps: dict[int, Step] = {}
        self.last_id = ids.last_step() if ids is not None else 0
        # address -> the step that connected there first (0: not a step), the
        # CONNECT_MEMORY most recently connected to, oldest first
        self.first_connect: OrderedDict[str, int] = OrderedDict()
        self.forgotten = 0                       # addresses dropped from first_connect
        self.open_of: dict[int, int] = {}        # agent pid -> its open step
        self.no_room = 0
        libbpf.step_reset(True)

    def close(self) -> None:
        libbpf.step_reset(False)

    # -- opened and closed in time order (Streamer._emit_line) ----------------------------
    def started(self, agent_pid: int, agent_comm: str, time_ns: int,
                tool_calls: list[dict[str, Any]], prefix: str) -> bytes:
        self.last_id += 1
        if self.ids is not None:
            self.ids.set_last_step(self.last_id)
        step = Step(self.last_id, agent_pid, agent_comm, time_ns,
                    [{"name": redact_text(c["name"]), "arguments": redact_value(c["arguments"])}
                     for c in tool_calls])
        self.drain()
        self._end(agent_pid, time_ns)
        self.steps[step.id] = step
        if libbpf.step_open(agent_pid, step.id):
            self.open_of[agent_pid] = step.id
        else:
            self.no_room += 1
        if self.json:
            rec = {"type": "step", "time_ns": time_ns, "step": step.id, "event": "start",
                   "agent_pid": agent_pid, "agent_comm": agent_comm,
                   "tool_calls": step.tool_calls}
            return (json.dumps(rec, separators=(",", ":")) + "\n").encode()
        return (f"{prefix}{step.id} tool={render_calls(step.tool_calls)}\n").encode()

    def closed(self, agent_pid: int, time_ns: int) -> bytes:
        self.drain()
        self._end(agent_pid, time_ns)
        return b""

    def _end(self, agent_pid: int, time_ns: int) -> None:
        sid = self.open_of.pop(agent_pid, None)
        if sid is not None:
            libbpf.step_open(agent_pid, 0)
            self.steps[sid].end_ns = time_ns

    def _agent_gone(self, agent_pid: int) -> None:
        """The agent exited with its step open: nothing will close it (``end_ns`` stays null)
        and its pid, reused, is no agent."""
        sid = self.open_of.pop(agent_pid)
        libbpf.step_open(agent_pid, 0)
        self.steps[sid].agent_gone = True

    # -- the step processes' actions --------------------------------------------------------
    def drain(self) -> None:
        for line in libbpf.step_side().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            self._action(rec)

    def _action(self, rec: dict[str, Any]) -> None:
        sid = rec.get("step", 0)
        step = self.steps.get(sid)
        if rec.get("type") == "exit" and rec.get("pid") in self.open_of:
            self._agent_gone(rec["pid"])
        if "spawn" in rec:
            if step is not None:
                step.saw(rec["spawn"], "")
            return
        kind = rec.get("type")
        if kind == "syscall" and rec.get("op") == "CONNECT" and "addr" in rec:
            self._connect(step, sid, rec)
            return
        if step is None:
            return
        pid = rec["pid"]
        step.saw(pid, rec.get("comm", ""))
        if kind == "exec":
            step.ran({"pid": pid, "filename": rec["filename"],
                      "argv": [redact_text(a) for a in rec["argv"]]})
        elif kind == "exit":
            e = {"pid": pid, "comm": rec["comm"], "exit_code": rec["exit_code"]}
            if "signal" in rec:
                e["signal"] = rec["signal"]
            step.exited(e)
        elif kind == "denied":
            step.denied += 1
        elif kind == "syscall" and "error" not in rec:
            self._file(step, rec)

    def _connect(self, step: Step | None, sid: int, rec: dict[str, Any]) -> None:
        addr = rec["addr"]
        if rec.get("family") not in ("inet", "inet6"):
            return
        self._remember(addr, sid if step is not None else 0)
        if step is None:
            return
        step.saw(rec["pid"], rec.get("comm", ""))
        result = rec.get("error", "OK")
        if result == "EINPROGRESS":
            result = "OK"
        step.connected(addr, result, self.first_connect[addr] == sid)

    def _remember(self, addr: str, sid: int) -> None:
        """A connect to addr by step sid (0: no step): the first one is kept, and addr is now
        the most recently connected to; past CONNECT_MEMORY the oldest is forgotten."""
        if addr in self.first_connect:
            self.first_connect.move_to_end(addr)
            return
        self.first_connect[addr] = sid
        if len(self.first_connect) > CONNECT_MEMORY:
            self.first_connect.popitem(last=False)
            self.forgotten += 1

    def lost_lines(self) -> list[str]:
        """What the steps could not keep or remember (empty when nothing)."""
        side_lost, members_lost = libbpf.step_lost()
        out = []
        if side_lost or members_lost or self.no_room:
            out.append(f"steps: {side_lost} action records not kept (buffer full), "
                       f"{members_lost} processes not put in their step (table full), "
                       f"{self.no_room} steps not opened (too many agents)")
        if self.forgotten:
            out.append(f"steps: {self.forgotten} addresses connected to were forgotten (only "
                       f"the {CONNECT_MEMORY} most recent are remembered): a step connecting "
                       "to one again counted it as never connected to before")
        return out

    def _file(self, step: Step, rec: dict[str, Any]) -> None:
        op = rec.get("op")
        name = rec.get("fd_name") if rec.get("fd_kind") == "file" else None
        if op == "READ" and name:
            if not startup_file(name):
                step.files_read.add(name)
        elif op == "WRITE" and name:
            step.wrote(name)
        elif op == "OPEN" and "path" in rec:
            path = rec["path"]
            sc = rec.get("syscall", "")
            flags = rec["args"][1] if sc == "open" else rec["args"][2]
            writes = sc == "creat" or bool(flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC |
                                                    O_APPEND))
            if sc == "openat2":
                writes = False  # flags behind a pointer: its writes say it
            if writes:
                step.wrote(path)
            elif not startup_file(path):
                step.files_read.add(path)
        elif op in _CHANGES:
            for key in ("path", "path2"):
                if key in rec:
                    step.wrote(rec[key])

    # -- the end ------------------------------------------------------------------------------
    def finish(self) -> None:
        self.drain()
        for pid in list(self.open_of):  # the run ended with them open: end_ns stays null
            del self.open_of[pid]
            libbpf.step_open(pid, 0)

    def records(self) -> list[bytes]:
        return [_line(s.record()) for s in self.steps.values()]

    def over(self, final: bool = False) -> list[bytes]:
        """serve: the summary records of the steps that are over (``final``: of every step
        left), each once; those steps are forgotten (a long-running serve keeps only the
        steps still going)."""
        self.drain()
        if final:
            self.finish()
        done = [s for s in self.steps.values() if final or s.is_over()]
        for s in done:
            del self.steps[s.id]
        return [_line(s.record()) for s in done]

    def summary_lines(self, tls_covered: bool) -> list[str]:
        """The end-of-run lines: each step, its actions, its flags."""
        if not self.steps:
            if not tls_covered:
                return ["--agent: no traced process mapped libssl or libgnutls: steps cannot "
                        "be tied to tool calls (the rest is traced)"]
            return ["steps: none (no LLM response named a tool call)"]
        flagged = [s for s in self.steps.values() if s.flags()]
        lines = [f"steps: {len(self.steps)}, {len(flagged)} flagged"]
        for s in self.steps.values():
            rec = s.record()
            procs = ", ".join(f"{p['pid']} ({p['comm']})" for p in rec["pids"]) or "none"
            codes = ", ".join(str(e["exit_code"]) if "signal" not in e else e["signal"]
                              for e in s.exits) or "-"
            lines.append(f"STEP {s.id} {render_calls(s.tool_calls)}: processes {procs}; "
                         f"exit {codes}" + ("  FLAGGED" if rec["flags"] else ""))
            lines += [f"  exec {e['filename']}" for e in rec["execs"]]
            lines += [f"  read {p}" for p in rec["files_read"]]
            lines += [f"  wrote {p}" for p in rec["files_written"]]
            lines += [f"  connect {c['addr']} {c['result']}" for c in rec["connects"]]
            if s.denied:
                lines.append(f"  denied {s.denied} operations")
            if rec["not_listed"]:
                lines.append(f"  ({rec['not_listed']} more not listed)")
            lines += [f"  FLAG {f['rule']}: {f['detail']}" for f in rec["flags"]]
        return lines + self.lost_lines()


class StepSummaries:
    """serve's line source (Streamer.pump's ``extra``): the summary of each step once it is
    over, after the records of this pump (stamped now: every record taken so far is older)."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    def take(self, timeout_ms: int = 0) -> list[tuple[int, bytes]]:
        now = time.monotonic_ns()
        return [(now, line) for line in self.steps.over()]

    def take_all(self) -> list[tuple[int, bytes]]:
        """Nothing here: the last summaries are written after the last records
        (``Steps.over(final=True)``), once the ring is drained."""
        return self.take()
