"""Non-agent: a file-churning batch job (read each input, transform it, write the output
through a temporary file and a rename, delete the previous generation), steadily.

    python3 batch.py --workdir DIR [--seed 1] [--seconds 120]
"""

from __future__ import annotations

import argparse
import os
import random
import time
import zlib
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=120.0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    inp, out = a.workdir / "in", a.workdir / "out"
    inp.mkdir(parents=True, exist_ok=True)
    out.mkdir(exist_ok=True)
    for i in range(16):
        (inp / f"rec{i}.dat").write_bytes(rng.randbytes(rng.randint(20_000, 200_000)))
    print(f"ready {os.getpid()}", flush=True)
    end = time.monotonic() + a.seconds
    gen = 0
    while time.monotonic() < end:
        for src in sorted(inp.iterdir()):
            data = src.read_bytes()
            tmp = out / f".{src.stem}.{gen}.tmp"
            tmp.write_bytes(zlib.compress(data, 1) + data[::-1])
            tmp.rename(out / f"{src.stem}.{gen}.out")
            old = out / f"{src.stem}.{gen - 1}.out"
            if old.exists():
                old.unlink()
            src.write_bytes(data[1:] + data[:1])  # the next generation's input
        gen += 1
        time.sleep(0.05)


if __name__ == "__main__":
    main()
