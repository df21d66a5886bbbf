"""Enforcement policies: the line format, its YAML form, and the built-in policies.

Line format (``*.policy`` and anything not ending in ``.yaml``/``.yml``)::

    # comment                      a '#' token starts a comment that runs to the end of the line
    block <op> [op ...]            deny <op> everywhere
    protect <path> <op> [op ...]   deny <op> only on <path> and everything under it
    phase <name>                   the rules below, up to the next 'phase', change the base
                                   (the rules above the first 'phase') for this phase:
      block / protect                add rules
      unblock <op> [op ...]          drop a base 'block'
      unprotect <path> <op> [op ...] drop operations of a base 'protect'

YAML form (``*.yaml`` / ``*.yml``)::

    description: optional text
    block: [connect, socket]
    protect:
      - {path: /etc, ops: [write, unlink]}
    phases:
      read_only: {protect: [{path: /srv, ops: [write]}]}
      write_logs: {protect: [{path: /srv/data, ops: [write]}], unblock: [connect]}

Both forms give the same :class:`Policy`. Every mistake raises :class:`PolicyError`
(a :class:`~syscall_watcher.errors.SwatchError`) whose message is one line,
``file:line:column: what was wrong; expected ...``.

Protected paths are stored the way the kernel reports them to BPF programs: absolute, with
symlinks, ``.``, ``..``, repeated and trailing slashes resolved (``os.path.realpath``), so a rule
matches the kernel's resolved path of the file an operation touches.

Over 400 lines on purpose: one grammar with two spellings (lines, YAML), and a mistake in either
must name file:line:column with what was expected — the parser, its validation and its messages
change together, so they stay in one module a reader can follow top to bottom.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import yaml

from syscall_watcher.data import builtin_policy_dir
from syscall_watcher.errors import SwatchError
from syscall_watcher.text import printable

#: Every operation a policy can name, in bit order: ``OPERATIONS[i]`` is bit ``1 << i`` of an
#: operation mask. The BPF side uses the same bits; never reorder, only append.
OPERATIONS: tuple[str, ...] = (
    "exec",
    "file_open",
    "connect",
    "socket",
    "bind",
    "listen",
    "kill",
    "unlink",
    "rename",
    "mkdir",
    "rmdir",
    "read",
    "write",
    "fork",
)

#: Operation name -> its bit in an operation mask.
OP_BITS: dict[str, int] = {op: 1 << i for i, op in enumerate(OPERATIONS)}

#: Operations whose kernel hook sees a file, so a ``protect`` rule can scope them to a path.
#: The others (network, kill, fork) have no path to compare and are only valid in ``block``.
PATH_OPERATIONS: frozenset[str] = frozenset(
    {"exec", "file_open", "unlink", "rename", "mkdir", "rmdir", "read", "write"}
)

#: The most ``protect`` paths one policy may hold (size of the BPF side's path arrays).
SW_POLICY_MAX_PATHS = 16

#: Room for one protected path in the BPF side's path array, including the terminating NUL.
SW_POLICY_PATH_MAX = 256

#: The most phases one policy may define (entries of the BPF side's ``rules`` map).
SW_POLICY_MAX_PHASES = 16

#: Room for a phase name in the BPF side's ``struct swp_rules``, including the NUL.
SW_POLICY_PHASE_NAME_MAX = 32


#: Where the built-in policies live (``load_policy("no-network")``).
BUILTIN_POLICY_DIR = builtin_policy_dir()

POLICY_SUFFIXES = (".policy", ".yaml", ".yml")
_YAML_SUFFIXES = (".yaml", ".yml")
_YAML_KEYS = ("description", "block", "protect", "phases")
_PHASE_KEYS = ("block", "protect", "unblock", "unprotect")
_PROTECT_KEYS = ("path", "ops")
_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_PLAIN_TAGS = frozenset(
    "tag:yaml.org,2002:" + t for t in ("str", "seq", "map", "int", "float", "bool", "null")
)


class PolicyError(SwatchError):
    """A policy file is wrong. ``str(err)`` is ``file:line:column: problem; expected ...``."""

    def __init__(self, source: str, line: int, column: int, problem: str, expected: str) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.problem = problem
        self.expected = expected
        super().__init__(f"{source}:{line}:{column}: {problem}; expected {expected}")


@dataclass(frozen=True)
class ProtectRule:
    """Deny ``ops`` on ``path`` and everything under it.

    ``path`` is the kernel-resolved form used for matching; ``written`` is the path as the policy
    spelled it (the first spelling, when several resolve to the same place).
    """

    path: str
    ops: frozenset[str]
    written: str = ""

    @property
    def mask(self) -> int:
        return ops_mask(self.ops)


@dataclass(frozen=True)
class Phase:
    """One phase's rules in full: the base with the phase's changes applied."""

    name: str
    blocks: frozenset[str]
    protects: tuple[ProtectRule, ...]

    def ops_on(self, path: str) -> frozenset[str]:
        """The operations this phase denies on the protected path ``path`` (resolved)."""
        for rule in self.protects:
            if rule.path == path:
                return rule.ops
        return frozenset()


@dataclass(frozen=True)
class Policy:
    """A parsed policy: operations denied everywhere, and operations denied under paths.

    A policy with phases: ``phases`` holds each phase's rules in full, in the order the file
    defines them (the first is the phase a load starts in), and ``blocks``/``protects`` are
    their union — everything some phase denies, which is what the enforcer must be able to
    hold; :meth:`in_phase` gives one phase's rules as a policy of their own.
    """

    name: str
    source: str
    blocks: frozenset[str]
    protects: tuple[ProtectRule, ...]
    description: str = ""
    phases: tuple[Phase, ...] = ()

    @property
    def phase_names(self) -> list[str]:
        return [p.name for p in self.phases]

    def phase_index(self, name: str) -> int:
        """The index of phase ``name``; SwatchError naming the defined ones otherwise."""
        for i, p in enumerate(self.phases):
            if p.name == name:
                return i
        if not self.phases:
            raise SwatchError(f"policy {self.name} defines no phases (see docs/policy.md, "
                              "\"Phases\")")
        hint = difflib.get_close_matches(name, self.phase_names, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise SwatchError(f"policy {self.name} has no phase {name!r}{did_you_mean}; its phases: "
                          f"{', '.join(self.phase_names)}")

    def in_phase(self, name: str) -> Policy:
        """Phase ``name``'s rules as a policy without phases (same name and source)."""
        phase = self.phases[self.phase_index(name)]
        return Policy(name=self.name, source=self.source, blocks=phase.blocks,
                      protects=phase.protects, description=self.description)

    @property
    def block_mask(self) -> int:
        return ops_mask(self.blocks)

    @property
    def operations(self) -> frozenset[str]:
        """Every operation this policy denies somewhere."""
        ops = set(self.blocks)
        for rule in self.protects:
            ops |= rule.ops
        return frozenset(ops)


def ops_mask(ops: Iterable[str]) -> int:
    """The bit mask (bits from :data:`OPERATIONS`) of ``ops``."""
    mask = 0
    for op in ops:
        bit = OP_BITS.get(op)
        if bit is None:
            raise SwatchError(f"unknown operation {op!r}; expected one of {', '.join(OPERATIONS)}")
        mask |= bit
    return mask


def mask_ops(mask: int) -> frozenset[str]:
    """The operations whose bits are set in ``mask`` (inverse of :func:`ops_mask`)."""
    if mask < 0 or mask >> len(OPERATIONS):
        raise SwatchError(f"operation mask {mask:#x} has bits beyond {OPERATIONS[-1]!r}")
    return frozenset(op for op, bit in OP_BITS.items() if mask & bit)


# --------------------------------------------------------------------------- shared checks


class _Builder:
    """Collects rules from either syntax, merging duplicates, and checks each as it arrives."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.blocks: set[str] = set()
        self.paths: dict[str, tuple[str, set[str]]] = {}  # resolved -> (as written, ops)
        self.description = ""
        # phase name -> its changes to the base; the section rules go to (None: the base)
        self.phases: dict[str, _PhaseChanges] = {}
        self.section: _PhaseChanges | None = None

    def start_phase(self, name: str, line: int, column: int) -> None:
        if not _valid_phase_name(name):
            self.fail(line, column, f"phase name {name!r} is not valid",
                      f"letters, digits, '_' or '-', at most {SW_POLICY_PHASE_NAME_MAX - 1} "
                      "characters")
        if name in self.phases:
            self.fail(line, column, f"a second phase named {name!r}", "unique phase names")
        if len(self.phases) >= SW_POLICY_MAX_PHASES:
            self.fail(line, column, f"too many phases: {name!r} would be number "
                      f"{len(self.phases) + 1}",
                      f"at most {SW_POLICY_MAX_PHASES} phases (SW_POLICY_MAX_PHASES)")
        self.section = self.phases[name] = _PhaseChanges(line, column)

    def unblock(self, op: str, line: int, column: int) -> None:
        if self.section is None:
            self.fail(line, column, "'unblock' outside a phase",
                      "'unblock' only in a phase, after a 'phase <name>' line")
        self.section.unblocks[op] = (line, column)

    def unprotect(self, written: str, resolved: str, ops: Iterable[str], line: int,
                  column: int) -> None:
        if self.section is None:
            self.fail(line, column, "'unprotect' outside a phase",
                      "'unprotect' only in a phase, after a 'phase <name>' line")
        have = self.section.unprotects.setdefault(resolved, (written, line, column, set()))
        have[3].update(ops)

    def fail(self, line: int, column: int, problem: str, expected: str) -> NoReturn:
        raise PolicyError(self.source, line, column, problem, expected)

    def op(self, name: str, line: int, column: int, *, for_path: bool) -> str:
        if name not in OP_BITS:
            hint = difflib.get_close_matches(name, OPERATIONS, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.fail(
                line,
                column,
                f"unknown operation {name!r}{did_you_mean}",
                f"one of {', '.join(OPERATIONS)}",
            )
        if for_path and name not in PATH_OPERATIONS:
            self.fail(
                line,
                column,
                f"operation {name!r} has no path, so protect cannot scope it",
                f"one of {', '.join(op for op in OPERATIONS if op in PATH_OPERATIONS)}"
                f" (use 'block {name}' to deny it everywhere)",
            )
        return name

    def path(self, written: str, line: int, column: int) -> str:
        if not written.startswith("/"):
            self.fail(line, column, f"relative path {written!r}", "an absolute path such as /etc")
        if "\0" in written:
            self.fail(line, column, "path contains a NUL byte", "an absolute path such as /etc")
        try:
            resolved = os.path.realpath(written, strict=True)
        except (OSError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            self.fail(
                line,
                column,
                f"path {written!r} cannot be used: {reason}",
                "an existing file or directory",
            )
        if len(resolved.encode()) >= SW_POLICY_PATH_MAX:
            self.fail(
                line,
                column,
                f"path {resolved!r} is {len(resolved.encode())} bytes long",
                f"at most {SW_POLICY_PATH_MAX - 1} bytes (SW_POLICY_PATH_MAX)",
            )
        return resolved

    def add_block(self, op: str) -> None:
        (self.blocks if self.section is None else self.section.blocks).add(op)

    def add_protect(
        self, written: str, resolved: str, ops: Iterable[str], line: int, column: int
    ) -> None:
        paths = self.paths if self.section is None else self.section.paths
        if resolved in paths:
            paths[resolved][1].update(ops)
            return
        known = set(self.paths)
        for changes in self.phases.values():
            known |= set(changes.paths)
        if resolved not in known and len(known) >= SW_POLICY_MAX_PATHS:
            self.fail(
                line,
                column,
                f"too many protected paths: {written!r} would be number {len(known) + 1}",
                f"at most {SW_POLICY_MAX_PATHS} distinct paths (SW_POLICY_MAX_PATHS)"
                + (", all phases together" if self.phases else ""),
            )
        spelled = "/" + os.path.normpath(written).lstrip("/")  # normpath keeps a leading '//'
        paths[resolved] = (spelled, set(ops))

    def _phase(self, name: str, changes: _PhaseChanges) -> Phase:
        """The base with one phase's changes applied; a removal of what the base does not
        hold is a mistake (it would do nothing)."""
        blocks = set(self.blocks)
        for op, (line, column) in changes.unblocks.items():
            if op not in blocks:
                self.fail(line, column, f"phase {name!r} unblocks {op!r}, which the base does "
                          "not block", "'unblock' of an operation a base 'block' names")
            blocks.discard(op)
        paths = {p: (w, set(ops)) for p, (w, ops) in self.paths.items()}
        for resolved, (written, line, column, ops) in changes.unprotects.items():
            have = paths.get(resolved, ("", set()))[1]
            missing = sorted(ops - have)
            if missing:
                self.fail(line, column, f"phase {name!r} unprotects {written!r} "
                          f"{' '.join(missing)}, which the base does not protect",
                          "'unprotect' of operations a base 'protect' of that path names")
            have -= ops
        for op in changes.blocks:
            blocks.add(op)
        for resolved, (written, ops) in changes.paths.items():
            paths.setdefault(resolved, (written, set()))[1].update(ops)
        return Phase(name=name, blocks=frozenset(blocks), protects=tuple(
            ProtectRule(path=p, ops=frozenset(ops), written=w)
            for p, (w, ops) in paths.items() if ops))

    def build(self, name: str) -> Policy:
        no_rules = not self.blocks and not self.paths and not any(
            c.blocks or c.paths for c in self.phases.values())
        if no_rules:
            self.fail(1, 1, "the policy has no rules", "at least one 'block' or 'protect' rule")
        if not self.phases:
            return Policy(
                name=name,
                source=self.source,
                blocks=frozenset(self.blocks),
                protects=tuple(
                    ProtectRule(path=resolved, ops=frozenset(ops), written=written)
                    for resolved, (written, ops) in self.paths.items()
                ),
                description=self.description,
            )
        phases = tuple(self._phase(n, c) for n, c in self.phases.items())
        union: dict[str, tuple[str, set[str]]] = {}
        for resolved, (written, _) in list(self.paths.items()) + [
                (p, v) for c in self.phases.values() for p, v in c.paths.items()]:
            union.setdefault(resolved, (written, set()))
        for phase in phases:
            for rule in phase.protects:
                union[rule.path][1].update(rule.ops)
        return Policy(
            name=name,
            source=self.source,
            blocks=frozenset().union(*(p.blocks for p in phases)),
            # every path any part of the file names, in the order it names them: a path rule's
            # index is the same in every phase (denials and counts name it by index)
            protects=tuple(ProtectRule(path=p, ops=frozenset(ops), written=w)
                           for p, (w, ops) in union.items() if ops),
            description=self.description,
            phases=phases,
        )


@dataclass
class _PhaseChanges:
    """What one phase section of a policy file changes, as written."""

    line: int
    column: int
    blocks: set[str] = field(default_factory=set)
    paths: dict[str, tuple[str, set[str]]] = field(default_factory=dict)
    unblocks: dict[str, tuple[int, int]] = field(default_factory=dict)
    unprotects: dict[str, tuple[str, int, int, set[str]]] = field(default_factory=dict)


def _valid_phase_name(name: str) -> bool:
    return (0 < len(name) < SW_POLICY_PHASE_NAME_MAX and name.isascii()
            and all(c.isalnum() or c in "_-" for c in name))


def _policy_name(source: str) -> str:
    """The file's name without its suffix, printable: a file name is any bytes, and the name
    is stored in the pins and printed (controls and non-UTF-8 bytes become ``\\xNN``)."""
    name = printable(Path(source).name)
    for suffix in POLICY_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


# --------------------------------------------------------------------------- line format

_BLOCK_USAGE = "'block <op> [op ...]'"
_PROTECT_USAGE = "'protect <path> <op> [op ...]'"
_PHASE_USAGE = "'phase <name>'"
_DIRECTIVES = ("block", "protect", "phase", "unblock", "unprotect")


def _tokens(line: str) -> list[tuple[str, int]]:
    """Whitespace-separated words with their 1-based columns, up to a word starting with '#'."""
    words: list[tuple[str, int]] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        start = i
        while i < n and not line[i].isspace():
            i += 1
        word = line[start:i]
        if word.startswith("#"):
            break
        words.append((word, start + 1))
    return words


def _header_comment(lines: list[str]) -> str:
    """The comment block at the top of a line-format file, without its '#' markers."""
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        out.append(stripped[1:].removeprefix(" ").rstrip())
    return "\n".join(out).strip()


def parse_lines(text: str, source: str) -> Policy:
    """Parse the line format. ``source`` names the file in error messages."""
    builder = _Builder(source)
    lines = text.splitlines()
    builder.description = _header_comment(lines)
    for lineno, line in enumerate(lines, start=1):
        words = _tokens(line)
        if not words:
            continue
        (directive, dcol), args = words[0], words[1:]
        if directive == "block":
            if not args:
                builder.fail(
                    lineno, dcol + len(directive), "'block' without an operation", _BLOCK_USAGE
                )
            for op, col in args:
                builder.add_block(builder.op(op, lineno, col, for_path=False))
        elif directive == "protect":
            if not args:
                builder.fail(
                    lineno,
                    dcol + len(directive),
                    "'protect' without a path or operations",
                    _PROTECT_USAGE,
                )
            (written, pcol), op_words = args[0], args[1:]
            if not op_words:
                builder.fail(
                    lineno,
                    pcol + len(written),
                    f"'protect {written}' without operations",
                    _PROTECT_USAGE,
                )
            resolved = builder.path(written, lineno, pcol)
            ops = [builder.op(op, lineno, col, for_path=True) for op, col in op_words]
            builder.add_protect(written, resolved, ops, lineno, pcol)
        elif directive == "phase":
            if len(args) != 1:
                col = args[1][1] if len(args) > 1 else dcol + len(directive)
                builder.fail(lineno, col, "'phase' takes one name", _PHASE_USAGE)
            builder.start_phase(args[0][0], lineno, args[0][1])
        elif directive == "unblock":
            if not args:
                builder.fail(lineno, dcol + len(directive), "'unblock' without an operation",
                             "'unblock <op> [op ...]'")
            for op, col in args:
                builder.unblock(builder.op(op, lineno, col, for_path=False), lineno, col)
        elif directive == "unprotect":
            if len(args) < 2:
                builder.fail(lineno, dcol + len(directive),
                             "'unprotect' without a path and operations",
                             "'unprotect <path> <op> [op ...]'")
            (written, pcol), op_words = args[0], args[1:]
            resolved = builder.path(written, lineno, pcol)
            ops = [builder.op(op, lineno, col, for_path=True) for op, col in op_words]
            builder.unprotect(written, resolved, ops, lineno, pcol)
        else:
            hint = difflib.get_close_matches(directive, _DIRECTIVES, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            builder.fail(
                lineno,
                dcol,
                f"unknown directive {directive!r}{did_you_mean}",
                f"{_BLOCK_USAGE}, {_PROTECT_USAGE}, {_PHASE_USAGE} (and in a phase 'unblock', "
                "'unprotect') or a '#' comment",
            )
    return builder.build(_policy_name(source))


# --------------------------------------------------------------------------- YAML form


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _yaml_str(builder: _Builder, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _STR_TAG:
        kind = _yaml_kind(node)
        builder.fail(*_pos(node), f"{kind} where {what} belongs", what)
    return str(node.value)


def _yaml_kind(node: yaml.Node) -> str:
    if node.tag not in _PLAIN_TAGS:
        return f"a value tagged {node.tag!r}"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _STR_TAG:
        return f"the string {node.value!r}"
    return f"the value {node.value!r}"


def _is_list(node: yaml.Node) -> bool:
    return isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG


def _is_mapping(node: yaml.Node) -> bool:
    return isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG


def _items(builder: _Builder, node: yaml.Node, what: str) -> list[yaml.Node]:
    """A list's items, or a lone value as a list of one (a tagged list is neither)."""
    if _is_list(node):
        return list(node.value)
    if isinstance(node, yaml.SequenceNode):
        builder.fail(*_pos(node), f"{_yaml_kind(node)} where {what} belongs", what)
    return [node]


def _yaml_ops(builder: _Builder, node: yaml.Node, *, for_path: bool, usage: str) -> list[str]:
    """An operation list: ``[a, b]`` or a single ``a``."""
    items = _items(builder, node, "a list of operation names")
    if not items:
        builder.fail(*_pos(node), "an empty operation list", usage)
    return [
        builder.op(_yaml_str(builder, item, "an operation name"), *_pos(item), for_path=for_path)
        for item in items
    ]


def _yaml_phases(builder: _Builder, node: yaml.Node) -> None:
    """``phases: {name: {block: ..., protect: ..., unblock: ..., unprotect: ...}, ...}``."""
    usage = "a mapping of phase names to their changes, like {read_only: {protect: [...]}}"
    if not _is_mapping(node) or not node.value:
        builder.fail(*_pos(node), f"{_yaml_kind(node)} where the phases belong", usage)
    base = builder.section
    for name_node, body in node.value:
        name = _yaml_str(builder, name_node, "a phase name")
        builder.start_phase(name, *_pos(name_node))
        if body.tag == "tag:yaml.org,2002:null":
            continue  # a phase with the base's rules, unchanged
        if not _is_mapping(body):
            builder.fail(*_pos(body), f"{_yaml_kind(body)} as phase {name!r}",
                         f"a mapping with {', '.join(repr(k) for k in _PHASE_KEYS)}")
        for key_node, value_node in body.value:
            key = _yaml_str(builder, key_node, "a phase key")
            if key == "block":
                for op in _yaml_ops(builder, value_node, for_path=False,
                                    usage="'block: [<op>, ...]'"):
                    builder.add_block(op)
            elif key == "unblock":
                for item in _items(builder, value_node, "a list of operation names"):
                    op = builder.op(_yaml_str(builder, item, "an operation name"), *_pos(item),
                                    for_path=False)
                    builder.unblock(op, *_pos(item))
            elif key in ("protect", "unprotect"):
                for entry in _items(builder, value_node, f"a list of {key} entries"):
                    _yaml_protect_entry(builder, entry, remove=key == "unprotect")
            else:
                hint = difflib.get_close_matches(key, _PHASE_KEYS, n=1)
                did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
                builder.fail(*_pos(key_node), f"unknown key {key!r} in phase {name!r}"
                             f"{did_you_mean}", f"one of {', '.join(repr(k) for k in _PHASE_KEYS)}")
    builder.section = base


def _yaml_protect_entry(builder: _Builder, entry: yaml.Node, remove: bool = False) -> None:
    usage = "a mapping like {path: /etc, ops: [write, unlink]}"
    if not _is_mapping(entry):
        builder.fail(*_pos(entry), f"{_yaml_kind(entry)} in the protect list", usage)
    fields: dict[str, yaml.Node] = {}
    for key_node, value_node in entry.value:
        key = _yaml_str(builder, key_node, "'path' or 'ops'")
        if key not in _PROTECT_KEYS:
            builder.fail(
                *_pos(key_node), f"unknown key {key!r} in a protect entry", "'path' or 'ops'"
            )
        if key in fields:
            builder.fail(*_pos(key_node), f"a second {key!r} in one protect entry", usage)
        fields[key] = value_node
    if "path" not in fields:
        builder.fail(*_pos(entry), "a protect entry without 'path'", usage)
    path_node = fields["path"]
    written = _yaml_str(builder, path_node, "an absolute path")
    if "ops" not in fields:
        builder.fail(*_pos(entry), f"a protect entry for {written!r} without 'ops'", usage)
    resolved = builder.path(written, *_pos(path_node))
    ops = _yaml_ops(builder, fields["ops"], for_path=True, usage="'ops: [<op>, ...]'")
    if remove:
        builder.unprotect(written, resolved, ops, *_pos(path_node))
    else:
        builder.add_protect(written, resolved, ops, *_pos(path_node))


def parse_yaml(text: str, source: str) -> Policy:
    """Parse the YAML form. ``source`` names the file in error messages."""
    builder = _Builder(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = err.problem or err.context or "invalid YAML"
        builder.fail(
            line, col, f"invalid YAML: {problem}", "a YAML mapping with 'block' and/or 'protect'"
        )
    except yaml.YAMLError as err:  # ReaderError: a character YAML does not allow
        position = getattr(err, "position", None)
        line, col = (1, 1)
        if isinstance(position, int):
            before = text[:position]
            line = before.count("\n") + 1
            col = position - (before.rfind("\n") + 1) + 1
        builder.fail(line, col, f"invalid YAML: {getattr(err, 'reason', err)}", "printable text")
    except RecursionError:
        builder.fail(1, 1, "YAML nested too deeply", "a YAML mapping with 'block' and/or 'protect'")
    if root is None:
        return builder.build(_policy_name(source))
    if not _is_mapping(root):
        builder.fail(
            *_pos(root),
            f"{_yaml_kind(root)} at the top level",
            "a mapping with 'block' and/or 'protect'",
        )
    expected_keys = ", ".join(repr(k) for k in _YAML_KEYS)
    for key_node, value_node in root.value:
        key = _yaml_str(builder, key_node, f"one of {expected_keys}")
        if key == "description":
            builder.description = _yaml_str(builder, value_node, "a description string").strip()
        elif key == "block":
            for op in _yaml_ops(builder, value_node, for_path=False, usage="'block: [<op>, ...]'"):
                builder.add_block(op)
        elif key == "protect":
            entries = _items(builder, value_node, "a list of protect entries")
            if not entries:
                builder.fail(
                    *_pos(value_node),
                    "an empty protect list",
                    "'protect: [{path: <path>, ops: [<op>, ...]}]'",
                )
            for entry in entries:
                _yaml_protect_entry(builder, entry)
        elif key == "phases":
            _yaml_phases(builder, value_node)
        else:
            hint = difflib.get_close_matches(key, _YAML_KEYS, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            builder.fail(
                *_pos(key_node), f"unknown key {key!r}{did_you_mean}", f"one of {expected_keys}"
            )
    return builder.build(_policy_name(source))


# --------------------------------------------------------------------------- files and built-ins


def is_yaml_source(source: str | os.PathLike[str]) -> bool:
    return str(source).endswith(_YAML_SUFFIXES)


def parse_policy(text: str, source: str) -> Policy:
    """Parse ``text`` in the syntax ``source``'s suffix selects (YAML for .yaml/.yml)."""
    return parse_yaml(text, source) if is_yaml_source(source) else parse_lines(text, source)


#: The largest policy file read: a policy is a few lines; anything bigger is a mistake
#: (``--policy /dev/zero`` must not read without end).
MAX_POLICY_BYTES = 1 << 20


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def read_policy_bytes(source: str) -> bytes:
    """The bytes of a policy file: a regular file of at most MAX_POLICY_BYTES, or SwatchError.

    Opened with O_NONBLOCK so a FIFO cannot block us, checked with fstat (not stat, so
    what we check is what we read), and read with a limit even if the file grows.
    """
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as err:
        raise SwatchError(f"{source}: cannot read the policy: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SwatchError(f"{source}: a policy must be a regular file, not "
                              f"{_file_kind(st.st_mode)}")
        if st.st_size > MAX_POLICY_BYTES:
            raise SwatchError(f"{source}: policy file too large ({st.st_size:,} bytes; at most "
                              f"{MAX_POLICY_BYTES:,})")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, MAX_POLICY_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_POLICY_BYTES:
                raise SwatchError(f"{source}: policy file too large (more than "
                                  f"{MAX_POLICY_BYTES:,} bytes)")
        return b"".join(chunks)
    except OSError as err:
        raise SwatchError(f"{source}: cannot read the policy: {err.strerror or err}") from None
    finally:
        os.close(fd)


def read_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and parse one policy file (a regular file of at most MAX_POLICY_BYTES)."""
    source = os.fspath(path)
    data = read_policy_bytes(source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise PolicyError(
            source, line, col, f"byte {data[err.start]:#04x} is not UTF-8", "UTF-8 text"
        ) from None
    return parse_policy(text, source)


def builtin_policies() -> dict[str, Path]:
    """Built-in policy name -> file."""
    if not BUILTIN_POLICY_DIR.is_dir():
        return {}
    return {
        _policy_name(p.name): p
        for p in sorted(BUILTIN_POLICY_DIR.iterdir())
        if p.is_file() and p.name.endswith(POLICY_SUFFIXES)
    }


def load_policy(path_or_name: str | os.PathLike[str]) -> Policy:
    """Load a policy file, or a built-in policy by name (``no-network``, ``no-exec``, ...).

    Anything with a '/' or a policy suffix is a path; a bare word is a built-in name first,
    and a file in the current directory only if no built-in has that name.
    """
    arg = os.fspath(path_or_name)
    looks_like_path = os.sep in arg or arg.endswith(POLICY_SUFFIXES)
    if not looks_like_path:
        builtin = builtin_policies().get(arg)
        if builtin is not None:
            return read_policy(builtin)
        if not os.path.isfile(arg):
            names = ", ".join(builtin_policies()) or "none installed"
            raise SwatchError(
                f"no built-in policy or policy file named {arg!r}; "
                f"expected a path or one of: {names}"
            )
    return read_policy(arg)
