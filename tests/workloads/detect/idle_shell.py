"""Non-agent: an idle interactive shell (bash -i on a pseudo-terminal, waiting for input).
Prints "ready PID" with the shell's pid once its prompt is out.

    python3 idle_shell.py [--seconds 120]
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import subprocess
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120.0)
    a = ap.parse_args()
    master, slave = pty.openpty()
    sh = subprocess.Popen(["bash", "--norc", "--noprofile", "-i"], stdin=slave, stdout=slave,
                          stderr=slave, start_new_session=True,
                          env={"PS1": "$ ", "TERM": "dumb", "PATH": os.environ["PATH"]})
    os.close(slave)
    seen = b""
    while b"$ " not in seen:  # the prompt: the shell is now waiting on its terminal
        select.select([master], [], [], 5)
        seen += os.read(master, 1024)
    print(f"ready {sh.pid}", flush=True)
    end = time.monotonic() + a.seconds
    try:
        while time.monotonic() < end and sh.poll() is None:
            r, _, _ = select.select([master], [], [], 1.0)
            if r:
                os.read(master, 1024)
    finally:
        sh.kill()
        sh.wait()


if __name__ == "__main__":
    main()
