"""Package data, and where to find it: the syscall table and profiles (here), the output's JSON
Schema (``schema/``), the compiled BPF objects (``bpf/``) and the built-in policies
(``policies/``) that a wheel carries here too.

In a checkout (editable install, ``make`` targets) the BPF objects are make's ``build/`` and the
policies the checkout's ``policies/``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: This directory: syscalls.yaml, profiles.yaml, syscall_table.json (+ bpf/, policies/ in a wheel).
DATA_DIR = Path(__file__).resolve().parent
#: The source checkout's root (meaningful only when running from one).
CHECKOUT_ROOT = DATA_DIR.parent.parent
#: Where an installed package (wheel, ``pip install .``) carries its compiled BPF objects.
PACKAGED_BPF_DIR = DATA_DIR / "bpf"
#: Where ``make`` builds them in a checkout.
CHECKOUT_BPF_DIR = CHECKOUT_ROOT / "build"


#: The JSON Schema (draft 2020-12) of every record swatch writes (JSON lines) and of the
#: documents its commands print with --json.
RECORD_SCHEMA = DATA_DIR / "schema" / "records.schema.json"


def record_schema() -> dict:  # type: ignore[type-arg]
    """The JSON Schema of swatch's output (see RECORD_SCHEMA)."""
    import json

    return json.loads(RECORD_SCHEMA.read_text())


#: The JSON Schema of the audit log's records and checkpoints (`swatch serve --audit-dir`);
#: an ``event`` record's ``event`` is a record of RECORD_SCHEMA (referenced by its $id).
AUDIT_SCHEMA = DATA_DIR / "schema" / "audit.schema.json"


def audit_schema() -> dict:  # type: ignore[type-arg]
    """The JSON Schema of the audit log (see AUDIT_SCHEMA)."""
    import json

    return json.loads(AUDIT_SCHEMA.read_text())


def built_object(name: str, env: str) -> Path:
    """The BPF object ``name``: the file the environment variable ``env`` names if set, else the
    one the package carries, else the one ``make`` built in the checkout's build/."""
    override = os.environ.get(env)
    if override:
        return Path(override)
    packaged = PACKAGED_BPF_DIR / name
    return packaged if packaged.is_file() else CHECKOUT_BPF_DIR / name


def builtin_policy_dir() -> Path:
    """The copy of policies/ an installed package carries, else the checkout's policies/."""
    packaged = DATA_DIR / "policies"
    return packaged if packaged.is_dir() else CHECKOUT_ROOT / "policies"
