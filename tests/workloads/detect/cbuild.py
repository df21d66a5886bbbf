"""Non-agent: a parallel C build (make -j2 over generated sources), rebuilt from clean in a loop.

    python3 cbuild.py --workdir DIR [--seed 1] [--files 24] [--seconds 120]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import time
from pathlib import Path

MAKEFILE = """SRCS := $(wildcard src/*.c)
OBJS := $(SRCS:.c=.o)
prog: $(OBJS)
\t$(CC) -o $@ $^
%.o: %.c
\t$(CC) -O1 -c -o $@ $<
clean:
\trm -f prog src/*.o
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=120.0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    src = a.workdir / "src"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(a.files):
        body = "\n".join(f"int f{i}_{j}(int x) {{ return x * {rng.randint(2, 99)} + {j}; }}"
                         for j in range(rng.randint(5, 40)))
        (src / f"m{i}.c").write_text(body + "\n")
    (src / "main.c").write_text("int main(void) { return 0; }\n")
    (a.workdir / "Makefile").write_text(MAKEFILE)
    print(f"ready {os.getpid()}", flush=True)
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        subprocess.run(["make", "-s", "-j2"], cwd=a.workdir, check=True)
        subprocess.run(["make", "-s", "clean"], cwd=a.workdir, check=True)


if __name__ == "__main__":
    main()
