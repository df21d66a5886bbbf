#!/usr/bin/env python3
"""Write the JSON twin of a data file: data/NAME.yaml -> data/NAME.yaml.json.

The YAML stays the source of truth; the twin lets every command's start-up skip PyYAML's
import (~10 ms) and parse. It carries the CRC-32 and length of the YAML text it was made from:
syscall_watcher.kernel.syscalls reads the twin only when they match the YAML beside it, else the
YAML itself. Usage: data_json.py NAME.yaml OUT.json
"""

import json
import sys
import zlib

import yaml


def main() -> int:
    src, out = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        text = f.read()
    doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if json.loads(json.dumps(doc)) != doc:  # e.g. a non-string key: JSON would change it
        print(f"data_json: {src} does not survive JSON unchanged", file=sys.stderr)
        return 1
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"source_crc32": zlib.crc32(text), "source_len": len(text), "data": doc}, f,
                  separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
