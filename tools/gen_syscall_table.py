#!/usr/bin/env python3
"""Generate the syscall number table from the kernel's own UAPI header.

The kernel builds <asm/unistd_64.h> from arch/*/entry/syscalls/syscall_64.tbl; Debian ships it
in linux-libc-dev. Usage: gen_syscall_table.py HEADER OUT.json
"""

import json
import platform
import re
import sys


def main() -> int:
    header, out = sys.argv[1], sys.argv[2]
    table: dict[str, int] = {}
    with open(header, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"#define\s+__NR_(\w+)\s+(\d+)\s*$", line)
            if m:
                table[m.group(1)] = int(m.group(2))
    if len(table) < 100:
        print(f"gen_syscall_table: only {len(table)} syscalls in {header}", file=sys.stderr)
        return 1
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"arch": platform.machine(), "source": header, "syscalls": table}, f, indent=0)
    print(f"gen_syscall_table: {len(table)} syscalls from {header}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
