"""`swatch run --agent`: steps — each tool call an LLM response named, tied to the processes the
agent spawned for it and what they did. A real agent loop (Python, urllib + ssl, so OpenSSL's
SSL_*_ex under the uprobes) talks to the fake HTTPS model (tests/fake_model.py, a test CA),
which answers turn by turn with tool calls the agent runs as real shell commands: one writes
a file, one (answered as server-sent events) cats it, one runs a script that connects to a
127.0.0.1 port the tool call does not name and exits 3. Then a text answer ends the loop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SWATCH, read_events, swatch, wait_for
from fake_model import FakeModelServer, make_certs

AGENT = r"""
import json, ssl, subprocess, sys, urllib.request
ca, url = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
messages = [{"role": "user", "content": "do the work"}]
tools = [{"type": "function", "function": {"name": "run_shell"}}]
turn = 0
while True:
    stream = turn == 1  # the second answer comes as server-sent events
    body = {"model": "fake-gpt", "stream": stream, "messages": messages, "tools": tools}
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx) as resp:
        raw = resp.read().decode()
    if stream:
        calls = {}
        for line in raw.splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for ch in json.loads(line[6:])["choices"]:
                for tc in ch.get("delta", {}).get("tool_calls") or []:
                    c = calls.setdefault(tc["index"], {"id": "", "type": "function",
                                                       "function": {"name": "", "arguments": ""}})
                    c["id"] = tc.get("id") or c["id"]
                    f = tc.get("function", {})
                    c["function"]["name"] += f.get("name", "")
                    c["function"]["arguments"] += f.get("arguments", "")
        calls = [calls[i] for i in sorted(calls)]
    else:
        calls = json.loads(raw)["choices"][0]["message"].get("tool_calls") or []
    if not calls:
        break
    messages.append({"role": "assistant", "content": None, "tool_calls": calls})
    for c in calls:
        cmd = json.loads(c["function"]["arguments"])["cmd"]
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        messages.append({"role": "tool", "tool_call_id": c["id"],
                         "content": f"{r.stdout} (exit {r.returncode})"})
    turn += 1
print(f"agent: {turn} turns")
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("steps")
    ca, cert, key = make_certs(d)
    with FakeModelServer(cert, key) as server:
        server.ca = ca  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def conversation(model: FakeModelServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The agent, its three tool calls, and the port the third one's script connects to (a
    listening socket of ours: the connect succeeds from its backlog)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    out, probe = tmp_path / "out.txt", tmp_path / "probe.sh"
    probe.write_text(f"echo hi > /dev/tcp/127.0.0.1/{port}\nexit 3\n")
    cmds = [f"printf hello > {out}", f"cat {out}", f"bash {probe}"]
    model.script = [[("run_shell", {"cmd": c})] for c in cmds]
    try:
        yield {"argv": [sys.executable, str(agent), str(model.ca),  # type: ignore[attr-defined]
                        model.url + "/v1/chat/completions"],
               "cmds": cmds, "port": port, "out": str(out), "probe": str(probe)}
    finally:
        model.script = None
        listener.close()


# bash looks its user up in /etc/passwd (through nsswitch) when SHELL is not in its environment,
# as under CI: a fixed SHELL keeps step 3's files exactly its script, wherever the suite runs.
AGENT_ENV = {"SHELL": "/bin/bash"}


def base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def check_steps(recs: list[dict], conversation: dict) -> dict[int, dict]:  # type: ignore[type-arg]
    """The conversation's three steps as the JSON records say them (run, watch and serve
    alike): each start record right after the LLM response that asked for it, each summary's
    exact files, addresses, exit codes and flag, each step ended by the agent's next request,
    and every record of a step's process tagged with its step. The summaries by step id."""
    port, out, probe = conversation["port"], conversation["out"], conversation["probe"]
    # The timeline: each step's start record right after the LLM response that asked for it.
    starts = [r for r in recs if r["type"] == "step" and r["event"] == "start"][:3]
    assert [(s["step"], s["tool_calls"]) for s in starts] == [
        (i + 1, [{"name": "run_shell", "arguments": {"cmd": c}}])
        for i, c in enumerate(conversation["cmds"])]
    for s in starts:
        before = recs[recs.index(s) - 1]
        assert before["type"] == "llm" and before["kind"] == "response"
        assert before["tool_calls"] == s["tool_calls"] and before["pid"] == s["agent_pid"]

    summary = {r["step"]: r for r in recs if r["type"] == "step" and r["event"] == "summary"}
    assert sorted(summary)[:3] == [1, 2, 3]
    s1, s2, s3 = summary[1], summary[2], summary[3]
    # 1: `printf hello > out.txt`: the shell alone (printf is a builtin) writes out.txt
    assert [base(e["filename"]) for e in s1["execs"]] == ["sh"]
    assert s1["execs"][0]["argv"] == ["/bin/sh", "-c", conversation["cmds"][0]]
    assert s1["files_written"] == [out] and s1["files_read"] == []
    assert s1["connects"] == [] and [e["exit_code"] for e in s1["exits"]] == [0]
    assert s1["flags"] == []
    # 2: `cat out.txt` reads it, writes nothing
    assert [base(e["filename"]) for e in s2["execs"]][-1] == "cat"
    assert s2["files_read"] == [out] and s2["files_written"] == []
    assert s2["connects"] == [] and {e["exit_code"] for e in s2["exits"]} == {0}
    assert s2["flags"] == []
    # 3: `bash probe.sh` connects to a port the call did not name, which nothing had
    # connected to before, and exits 3: flagged for that, and for nothing else
    assert [base(e["filename"]) for e in s3["execs"]][-1] == "bash"
    assert s3["files_read"] == [probe] and s3["files_written"] == []
    assert s3["connects"] == [{"addr": f"127.0.0.1:{port}", "result": "OK"}]
    assert {e["exit_code"] for e in s3["exits"]} == {3}
    assert s3["flags"] == [{"rule": "connect", "detail": f"connected to 127.0.0.1:{port}: not "
                            "named in the tool call, never connected to before"}]
    # Each step ended at the agent's next request.
    requests = [r for r in recs if r["type"] == "llm" and r["kind"] == "request"]
    assert [s["end_ns"] for s in (s1, s2, s3)] == [r["time_ns"] for r in requests[1:4]]

    # Every record of a step's processes carries its step; nothing else carries one.
    step_of = {p["pid"]: sid for sid, s in summary.items() for p in s["pids"]}
    assert len(step_of) == sum(len(s["pids"]) for s in summary.values())  # no pid in two
    agent_pid = starts[0]["agent_pid"]
    forks = [r["child_pid"] for r in recs if r["type"] == "fork" and r["pid"] == agent_pid]
    assert len(forks) == len(summary) and all(f in step_of for f in forks)  # a shell per call
    tagged = 0
    for r in recs:
        if r["type"] in ("syscall", "exec", "exit", "fork", "tls", "http", "llm"):
            assert r.get("step") == step_of.get(r["pid"]), r
            tagged += "step" in r
    assert tagged > 10
    connects = [r for r in recs if r["type"] == "syscall" and r["syscall"] == "connect"
                and r.get("addr") == f"127.0.0.1:{port}"]
    assert len(connects) == 1 and connects[0]["step"] == 3
    return summary


def test_steps_json_each_tool_call_its_processes_and_the_one_flag(conversation, tmp_path):  # type: ignore[no-untyped-def]
    trace = tmp_path / "trace.jsonl"
    proc = swatch("run", "--agent", "--json", "-o", str(trace), "--", *conversation["argv"],
                  env=AGENT_ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "agent: 3 turns\n"
    recs = read_events(trace)  # every record validated against the schema
    summary = check_steps(recs, conversation)
    assert sorted(summary) == [1, 2, 3]
    assert [r["stream"] for r in recs if r["type"] == "llm" and r["kind"] == "response"] == \
        [False, True, False, False]
    # the summaries are the trace's last records
    assert [r["type"] for r in recs[-3:]] == ["step"] * 3


def held_agent(conversation: dict) -> subprocess.Popen:  # type: ignore[type-arg]
    """The agent, waiting on a line until the tracer's consumer streams (`sh` reads it, then
    exec's the agent: the same pid)."""
    return subprocess.Popen(["/bin/sh", "-c", 'read _ && exec "$@"', "sh",
                             *conversation["argv"]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **AGENT_ENV})


def test_watch_agent_on_a_loaded_tracer(conversation, tmp_path: Path, pin_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """`swatch watch --agent` next to a tracer loaded on the (waiting) agent: the same steps,
    summed up when the watch ends."""
    agent = held_agent(conversation)
    assert agent.stdin is not None and agent.stdout is not None
    out = tmp_path / "w.jsonl"
    watch = None
    try:
        swatch("load", "--pid", str(agent.pid), "--pin-dir", str(pin_dir), check=True)
        watch = subprocess.Popen([SWATCH, "watch", "--agent", "--json", "-o", str(out),
                                  "--pin-dir", str(pin_dir)], stderr=subprocess.PIPE, text=True)
        first = watch.stderr.readline()  # type: ignore[union-attr]
        assert first.startswith("swatch: --tls: uprobes on "), first  # the stream is open
        agent.stdin.write("go\n")
        agent.stdin.close()
        assert agent.wait(timeout=30) == 0
        assert agent.stdout.read() == "agent: 3 turns\n"
        # the last request's response, then SIGTERM: the steps are summed up at the end
        assert wait_for(lambda: out.read_text().count('"kind":"response"') == 4, timeout=15)
        watch.send_signal(signal.SIGTERM)
        _, err = watch.communicate(timeout=30)
        assert watch.returncode == 0, err
    finally:
        if watch is not None and watch.poll() is None:
            watch.kill()
            watch.wait()
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    recs = read_events(out)
    assert sorted(check_steps(recs, conversation)) == [1, 2, 3]
    assert [r["type"] for r in recs[-3:]] == ["step"] * 3


def test_steps_human_timeline_and_summary(conversation) -> None:  # type: ignore[no-untyped-def]
    proc = swatch("run", "--agent", "--", *conversation["argv"],
                  env=AGENT_ENV)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    cmds, port = conversation["cmds"], conversation["port"]
    steps = [line.split(" STEP    ", 1)[1] for line in lines if " STEP    " in line]
    assert steps == [f"{i + 1} tool=run_shell(cmd={json.dumps(c)})" for i, c in enumerate(cmds)]
    # each STEP line comes right after its LLM RESPONSE line
    for i, line in enumerate(lines):
        if " STEP    " in line:
            assert " LLM     RESPONSE tool_calls=[run_shell(" in lines[i - 1]
    summary = lines[lines.index("swatch: steps: 3, 1 flagged"):]
    flagged = [line for line in summary if line.endswith("FLAGGED")]
    assert len(flagged) == 1 and flagged[0].startswith(
        f"swatch: STEP 3 run_shell(cmd={json.dumps(cmds[2])}): processes ")
    assert flagged[0].endswith("; exit 3, 3  FLAGGED") or flagged[0].endswith("; exit 3  FLAGGED")
    assert f"swatch:   wrote {conversation['out']}" in summary
    assert f"swatch:   read {conversation['probe']}" in summary
    assert f"swatch:   connect 127.0.0.1:{port} OK" in summary
    assert [line for line in summary if "FLAG " in line] == [
        f"swatch:   FLAG connect: connected to 127.0.0.1:{port}: not named in the tool call, "
        "never connected to before"]


def test_agent_without_a_tls_library_says_steps_cannot_be_tied() -> None:
    proc = swatch("run", "--agent", "--", "/bin/sh", "-c", "echo hi > /dev/null")
    assert proc.returncode == 0, proc.stderr
    assert " EXEC " in proc.stderr  # the rest is traced
    said = [line for line in proc.stderr.splitlines() if "steps cannot be tied" in line]
    assert said == ["swatch: --agent: no traced process mapped libssl or libgnutls: steps "
                    "cannot be tied to tool calls (the rest is traced)"]


def test_agent_does_not_go_with_count() -> None:
    proc = swatch("run", "--agent", "-c", "--", "/bin/true")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "swatch: error: --agent shows steps: it does not go with --count/-c"]


FAN = r"""
import socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):  # n distinct addresses on 127/8, one port nothing listens on: refused
    s = socket.socket()
    try:
        s.connect((f"127.0.{1 + i // 250}.{1 + i % 250}", port))
    except ConnectionRefusedError:
        pass
    s.close()
"""


def test_connect_memory_is_bounded_and_the_new_address_flag_follows_it(  # type: ignore[no-untyped-def]
        conversation, model, tmp_path: Path) -> None:
    """The `connect` flag's memory of addresses connected to keeps the CONNECT_MEMORY most
    recently connected to. A real agent loop: step 1 runs the probe (a connect to a port no tool
    call names: flagged, never connected to before), step 2 runs it again (remembered: not
    flagged), step 3 connects to CONNECT_MEMORY - 1 other addresses (on a port its call names:
    not flagged), which pushes the probe's address out — but not the model's, which the agent's
    request 3 connected to after step 2 and its request 4 refreshes — so step 4's probe connect
    is new again, and flagged. Forgotten: the probe's address (at the last of step 3's
    connects) and, when step 4 puts it back, the oldest of step 3's: 2, said in the summary."""
    from syscall_watcher.tls.steps import CONNECT_MEMORY, LIST_MAX

    closed = socket.socket()  # bound, never listening: every connect to its port is refused
    closed.bind(("0.0.0.0", 0))
    closed_port = closed.getsockname()[1]
    fan = tmp_path / "fan.py"
    fan.write_text(FAN)
    probe, port = conversation["probe"], conversation["port"]
    Path(probe).write_text(f"echo hi > /dev/tcp/127.0.0.1/{port}\n")
    many = CONNECT_MEMORY - 1
    cmds = [f"bash {probe}", f"bash {probe}", f"{sys.executable} {fan} {many} {closed_port}",
            f"bash {probe}"]
    model.script = [[("run_shell", {"cmd": c})] for c in cmds]
    trace = tmp_path / "trace.jsonl"
    try:
        proc = swatch("run", "--agent", "--json", "-o", str(trace), "--",
                      *conversation["argv"], env=AGENT_ENV, timeout=180)
    finally:
        closed.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "agent: 4 turns\n"
    assert re.search(r"^swatch: events delivered=\d+ dropped=0 ", proc.stderr, re.M), \
        proc.stderr[-2000:]  # every connect reached the steps
    recs = read_events(trace)
    summary = {r["step"]: r for r in recs if r["type"] == "step" and r["event"] == "summary"}
    assert sorted(summary) == [1, 2, 3, 4]
    probe_addr = f"127.0.0.1:{port}"
    flag = [{"rule": "connect", "detail": f"connected to {probe_addr}: not named in the tool "
             "call, never connected to before"}]
    for sid in (1, 2, 4):
        assert summary[sid]["connects"] == [{"addr": probe_addr, "result": "OK"}]
    assert summary[1]["flags"] == flag       # never connected to before
    assert summary[2]["flags"] == []         # step 1 did: remembered
    assert summary[4]["flags"] == flag       # forgotten since: new again
    s3 = summary[3]
    assert s3["flags"] == []                 # its call names the port
    assert len(s3["connects"]) == LIST_MAX and s3["not_listed"] >= many - LIST_MAX
    assert {c["result"] for c in s3["connects"]} == {"ECONNREFUSED"}
    fanned = {r["addr"] for r in recs if r["type"] == "syscall" and r["syscall"] == "connect"
              and r.get("step") == 3}
    assert len(fanned) == many  # every connect of step 3 seen, each its own address

    # The rule replayed over the trace's connects (in record order, every traced process's):
    # the addresses a bounded, most-recently-used memory forgets — what swatch said.
    memory: dict[str, None] = {}
    forgotten = 0
    for r in recs:
        if r["type"] == "syscall" and r["syscall"] == "connect" and \
                r.get("family") in ("inet", "inet6"):
            addr = r["addr"]
            known = addr in memory
            memory.pop(addr, None)
            memory[addr] = None  # the most recent now
            if not known and len(memory) > CONNECT_MEMORY:
                del memory[next(iter(memory))]  # the least recent
                forgotten += 1
    assert forgotten == 2
    said = [line for line in proc.stderr.splitlines() if "were forgotten" in line]
    assert said == [f"swatch: steps: {forgotten} addresses connected to were forgotten (only "
                    f"the {CONNECT_MEMORY} most recent are remembered): a step connecting to "
                    "one again counted it as never connected to before"]


WIDE = r"""
touch $(seq -f "$1/f%g" 0 249)
for i in 1 2 3; do echo x >> "${1%/*}/zz_out"; done
for i in $(seq 250); do /bin/true; done
"""


def test_lists_past_their_end_hide_no_flag_and_count_each_entry_once(  # type: ignore[no-untyped-def]
        conversation, model, tmp_path: Path) -> None:
    """A step doing more than its lists keep: a real agent's one tool call runs a script that
    creates 250 files the call names (by their last component), then appends three times to
    one it does not name, then runs /bin/true 250 times. The lists keep LIST_MAX entries each;
    the unnamed write, past the files list's end, is flagged all the same (a step cannot hide
    a write behind 200 named ones), and `not_listed` counts each entry left out once — the
    file appended to three times once, every process, exec and exit past its list once."""
    from syscall_watcher.tls.steps import LIST_MAX

    work = tmp_path / "w"
    work.mkdir()
    script = work / "wide.sh"
    script.write_text(WIDE)
    named = " ".join(f"f{i}" for i in range(250))
    model.script = [[("run_shell", {"cmd": f"bash {script} {work}", "files": named,
                                    "uses": "seq touch true"})]]
    trace = tmp_path / "trace.jsonl"
    proc = swatch("run", "--agent", "--json", "-o", str(trace), "--", *conversation["argv"],
                  env=AGENT_ENV, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "agent: 1 turns\n"
    assert re.search(r"^swatch: events delivered=\d+ dropped=0 ", proc.stderr, re.M), \
        proc.stderr[-2000:]  # every record reached the step
    recs = read_events(trace)
    (s,) = [r for r in recs if r["type"] == "step" and r["event"] == "summary"]
    assert s["step"] == 1

    # What the kernel reported for the step's processes, from the trace.
    mine = [r for r in recs if r.get("step") == 1 and r["type"] != "step"]
    pids = {r["pid"] for r in mine} | {r["child_pid"] for r in mine if r["type"] == "fork"}
    execs = [r for r in mine if r["type"] == "exec"]
    exits = [r for r in mine if r["type"] == "exit"]
    assert len(exits) == len(pids) and len(execs) > LIST_MAX + 40  # 250 trues and the rest
    assert [e["filename"] for e in execs].count("/bin/true") == 250

    assert s["files_written"] == [f"{work}/f{i}" for i in range(LIST_MAX)]
    assert s["flags"] == [{"rule": "write", "detail": f"wrote {tmp_path}/zz_out: not named "
                           "in the tool call"}]
    assert [e["filename"] for e in s["execs"]] == [e["filename"] for e in execs[:LIST_MAX]]
    assert len(s["pids"]) == len(s["exits"]) == LIST_MAX
    assert {p["pid"] for p in s["pids"]} <= pids
    assert [e["pid"] for e in s["exits"]] == [e["pid"] for e in exits[:LIST_MAX]]
    left_out = (250 - LIST_MAX) + 1 + (len(execs) - LIST_MAX) + (len(pids) - LIST_MAX) + \
        (len(exits) - LIST_MAX)
    assert s["not_listed"] == left_out
    assert f"({left_out} more not listed)" in proc.stderr
