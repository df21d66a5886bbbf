"""The policy language: both syntaxes, every error with its exact location, the built-ins."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syscall_watcher.errors import SwatchError
from syscall_watcher.policy.language import (
    BUILTIN_POLICY_DIR,
    OPERATIONS,
    PATH_OPERATIONS,
    SW_POLICY_MAX_PATHS,
    SW_POLICY_PATH_MAX,
    Policy,
    PolicyError,
    ProtectRule,
    builtin_policies,
    load_policy,
    mask_ops,
    ops_mask,
    parse_lines,
    parse_yaml,
    read_policy,
)

ALL_OPS = ", ".join(OPERATIONS)
PATH_OPS = ", ".join(op for op in OPERATIONS if op in PATH_OPERATIONS)
ONE_LINE_ERROR = re.compile(r"^(?P<src>.+):(?P<line>\d+):(?P<col>\d+): [^\n]+; expected [^\n]+$")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(PolicyError) as info:
        read_policy(path)
    message = str(info.value)
    assert "\n" not in message
    assert ONE_LINE_ERROR.match(message), message
    return message


# --------------------------------------------------------------------------- operation bits


def test_operation_bits_are_fixed() -> None:
    # The BPF side hard-codes these bits: this list may only ever grow at the end.
    assert OPERATIONS == (
        "exec", "file_open", "connect", "socket", "bind", "listen", "kill",
        "unlink", "rename", "mkdir", "rmdir", "read", "write", "fork",
    )  # fmt: skip
    assert ops_mask(["exec"]) == 0x1
    assert ops_mask(["connect", "socket"]) == 0x4 | 0x8
    assert ops_mask(["fork"]) == 1 << 13
    assert ops_mask(OPERATIONS) == (1 << 14) - 1
    assert ops_mask([]) == 0


def test_mask_round_trip_and_errors() -> None:
    for op in OPERATIONS:
        assert mask_ops(ops_mask([op])) == {op}
    assert mask_ops(ops_mask(["write", "unlink"])) == {"write", "unlink"}
    with pytest.raises(SwatchError, match=r"^unknown operation 'execve'; expected one of exec, "):
        ops_mask(["execve"])
    with pytest.raises(SwatchError):
        mask_ops(1 << 14)


# --------------------------------------------------------------------------- line format: success


def test_line_format_parses_blocks_protects_comments(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    path = write(
        tmp_path,
        "mine.policy",
        f"# My policy\n# second line\n\nblock connect   # trailing comment\n"
        f"\tblock socket bind\n  protect {etc}/ write unlink#not-a-comment-start\n",
    )
    with pytest.raises(PolicyError) as info:  # 'unlink#not...' is one word, an unknown op
        read_policy(path)
    assert str(info.value).startswith(f"{path}:6:")

    path.write_text(
        f"# My policy\n# second line\n\nblock connect   # trailing comment\n"
        f"\tblock socket bind\n  protect {etc}/ write unlink # comment\n"
    )
    policy = read_policy(path)
    assert policy.name == "mine"
    assert policy.source == str(path)
    assert policy.description == "My policy\nsecond line"
    assert policy.blocks == {"connect", "socket", "bind"}
    assert policy.protects == (ProtectRule(str(etc), frozenset({"write", "unlink"}), str(etc)),)
    assert policy.block_mask == ops_mask(["connect", "socket", "bind"])
    assert policy.protects[0].mask == ops_mask(["write", "unlink"])
    assert policy.operations == {"connect", "socket", "bind", "write", "unlink"}


def test_duplicates_merge_and_paths_are_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    path = write(
        tmp_path,
        "dup.policy",
        f"block exec\nblock exec\n"
        f"protect {real} write\n"
        f"protect {tmp_path}/link/ unlink\n"  # same directory through a symlink
        f"protect {real}/sub/.. mkdir\n"  # and through '..'
        f"protect /{tmp_path}//real/./sub rmdir\n",
    )
    policy = read_policy(path)
    assert policy.blocks == {"exec"}
    assert policy.protects == (
        ProtectRule(str(real), frozenset({"write", "unlink", "mkdir"}), str(real)),
        ProtectRule(str(real / "sub"), frozenset({"rmdir"}), f"{tmp_path}/real/sub"),
    )


def test_exactly_max_paths_is_accepted(tmp_path: Path) -> None:
    dirs = [tmp_path / f"d{i}" for i in range(SW_POLICY_MAX_PATHS)]
    for d in dirs:
        d.mkdir()
    text = "".join(f"protect {d} write\n" for d in dirs) + f"protect {dirs[0]} read\n"
    policy = read_policy(write(tmp_path, "max.policy", text))
    assert len(policy.protects) == SW_POLICY_MAX_PATHS
    assert policy.protects[0].ops == {"write", "read"}


# --------------------------------------------------------------------------- line format: errors


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "block conect\n",
            "1:7",
            f"unknown operation 'conect' (did you mean 'connect'?); expected one of {ALL_OPS}",
        ),
        (
            "# header\n\nblock exec zzz\n",
            "3:12",
            f"unknown operation 'zzz'; expected one of {ALL_OPS}",
        ),
        (
            "  blok connect\n",
            "1:3",
            (
                "unknown directive 'blok' (did you mean 'block'?); expected 'block <op> [op ...]', "
                "'protect <path> <op> [op ...]', 'phase <name>' (and in a phase 'unblock', "
                "'unprotect') or a '#' comment"
            ),
        ),
        (
            "allow exec\n",
            "1:1",
            (
                "unknown directive 'allow'; expected 'block <op> [op ...]', "
                "'protect <path> <op> [op ...]', 'phase <name>' (and in a phase 'unblock', "
                "'unprotect') or a '#' comment"
            ),
        ),
        (
            "block exec\nBLOCK exec\n",
            "2:1",
            (
                "unknown directive 'BLOCK'; expected 'block <op> [op ...]', "
                "'protect <path> <op> [op ...]', 'phase <name>' (and in a phase 'unblock', "
                "'unprotect') or a '#' comment"
            ),
        ),
        (
            "block   # nothing\n",
            "1:6",
            "'block' without an operation; expected 'block <op> [op ...]'",
        ),
        (
            "\tprotect\n",
            "1:9",
            "'protect' without a path or operations; expected 'protect <path> <op> [op ...]'",
        ),
        (
            "protect /  \n",
            "1:10",
            "'protect /' without operations; expected 'protect <path> <op> [op ...]'",
        ),
        (
            "protect etc write\n",
            "1:9",
            "relative path 'etc'; expected an absolute path such as /etc",
        ),
        (
            "protect ./x write\n",
            "1:9",
            "relative path './x'; expected an absolute path such as /etc",
        ),
        (
            "protect / write connect\n",
            "1:17",
            (
                f"operation 'connect' has no path, so protect cannot scope it; expected one of "
                f"{PATH_OPS} (use 'block connect' to deny it everywhere)"
            ),
        ),
        (
            "protect / write wrte\n",
            "1:17",
            f"unknown operation 'wrte' (did you mean 'write'?); expected one of {ALL_OPS}",
        ),
        (
            "protect /a\0b write\n",
            "1:9",
            "path contains a NUL byte; expected an absolute path such as /etc",
        ),
        (
            "# only a comment\n\n   \n",
            "1:1",
            "the policy has no rules; expected at least one 'block' or 'protect' rule",
        ),
        ("", "1:1", "the policy has no rules; expected at least one 'block' or 'protect' rule"),
    ],
)
def test_line_errors(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, "bad.policy", text)
    assert error_of(path) == f"{path}:{where}: {message}"


def test_missing_path_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    path = write(tmp_path, "bad.policy", f"block exec\n  protect {missing} write\n")
    assert error_of(path) == (
        f"{path}:2:11: path '{missing}' cannot be used: No such file or directory; "
        "expected an existing file or directory"
    )


def test_path_through_a_file_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = write(tmp_path, "bad.policy", f"protect {tmp_path}/file/x write\n")
    assert error_of(path) == (
        f"{path}:1:9: path '{tmp_path}/file/x' cannot be used: Not a directory; "
        "expected an existing file or directory"
    )


def test_too_many_paths_error(tmp_path: Path) -> None:
    dirs = [tmp_path / f"d{i}" for i in range(SW_POLICY_MAX_PATHS + 1)]
    for d in dirs:
        d.mkdir()
    text = "block exec\n" + "".join(f"protect {d} write\n" for d in dirs)
    path = write(tmp_path, "many.policy", text)
    assert error_of(path) == (
        f"{path}:{SW_POLICY_MAX_PATHS + 2}:9: too many protected paths: '{dirs[-1]}' would be "
        f"number {SW_POLICY_MAX_PATHS + 1}; expected at most {SW_POLICY_MAX_PATHS} distinct "
        "paths (SW_POLICY_MAX_PATHS)"
    )


def test_path_too_long_error(tmp_path: Path) -> None:
    deep = tmp_path
    while len(str(deep).encode()) < SW_POLICY_PATH_MAX:
        deep = deep / ("x" * 40)
    deep.mkdir(parents=True)
    path = write(tmp_path, "long.policy", f"protect {deep} write\n")
    assert error_of(path) == (
        f"{path}:1:9: path '{deep}' is {len(str(deep).encode())} bytes long; expected at most "
        f"{SW_POLICY_PATH_MAX - 1} bytes (SW_POLICY_PATH_MAX)"
    )


def test_not_utf8_error(tmp_path: Path) -> None:
    path = tmp_path / "bin.policy"
    path.write_bytes(b"block exec\nblock \xc3\xa9x\xff\n")
    assert error_of(path) == f"{path}:2:9: byte 0xff is not UTF-8; expected UTF-8 text"


def test_unreadable_file_error(tmp_path: Path) -> None:
    with pytest.raises(SwatchError) as info:
        read_policy(tmp_path / "nope.policy")
    assert (
        str(info.value)
        == f"{tmp_path}/nope.policy: cannot read the policy: No such file or directory"
    )
    assert not isinstance(info.value, PolicyError)


# --------------------------------------------------------------------------- YAML form


def test_yaml_equals_line_form(tmp_path: Path) -> None:
    etc, usr = tmp_path / "etc", tmp_path / "usr"
    etc.mkdir()
    usr.mkdir()
    lines = read_policy(
        write(
            tmp_path,
            "p.policy",
            f"# Sandbox\nblock connect socket\nblock exec\n"
            f"protect {etc} write unlink\nprotect {usr} mkdir\nprotect {etc} rename\n",
        )
    )
    yml = read_policy(
        write(
            tmp_path,
            "p.yaml",
            f"description: Sandbox\nblock: [connect, socket]\n"
            f"protect:\n  - {{path: {etc}, ops: [write, unlink]}}\n"
            f"  - path: {usr}\n    ops: mkdir\n  - {{path: '{etc}/', ops: [rename]}}\n"
            f"block: exec\n",
        )
    )
    assert yml.name == lines.name == "p"
    assert (yml.blocks, yml.protects, yml.description) == (
        lines.blocks,
        lines.protects,
        lines.description,
    )
    assert yml.protects[0].ops == {"write", "unlink", "rename"}


def test_yaml_suffixes_select_the_parser(tmp_path: Path) -> None:
    text = "block: [exec]\n"
    assert read_policy(write(tmp_path, "a.yml", text)).blocks == {"exec"}
    assert read_policy(write(tmp_path, "a.yaml", text)).blocks == {"exec"}
    # The same text in a .policy file is the line format, where 'block:' is no directive.
    assert error_of(write(tmp_path, "a.policy", text)).startswith(
        f"{tmp_path}/a.policy:1:1: unknown directive 'block:'"
    )


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "block: [connect\n",
            "2:1",
            (
                "invalid YAML: expected ',' or ']', but got '<stream end>'; "
                "expected a YAML mapping with 'block' and/or 'protect'"
            ),
        ),
        (
            "block: exec\n\tprotect: []\n",
            "2:1",
            (
                "invalid YAML: found character '\\t' that cannot start any token; "
                "expected a YAML mapping with 'block' and/or 'protect'"
            ),
        ),
        (
            "block: exec\n---\nblock: fork\n",
            "2:1",
            "invalid YAML: but found another document; expected a YAML mapping with 'block' and/or 'protect'",
        ),
        (
            "ok: 1\nx: \x07\n",
            "2:4",
            "invalid YAML: special characters are not allowed; expected printable text",
        ),
        (
            "- block\n",
            "1:1",
            "a list at the top level; expected a mapping with 'block' and/or 'protect'",
        ),
        (
            "block exec\n",
            "1:1",
            "the string 'block exec' at the top level; expected a mapping with 'block' and/or 'protect'",
        ),
        (
            "blocks: [exec]\n",
            "1:1",
            "unknown key 'blocks' (did you mean 'block'?); expected one of 'description', 'block', 'protect', 'phases'",
        ),
        (
            "block: [exec]\n1: x\n",
            "2:1",
            "the value '1' where one of 'description', 'block', 'protect', 'phases' belongs; "
            "expected one of 'description', 'block', 'protect', 'phases'",
        ),
        (
            "block: [exec, conect]\n",
            "1:15",
            f"unknown operation 'conect' (did you mean 'connect'?); expected one of {ALL_OPS}",
        ),
        (
            "block:\n  - exec\n  - [fork]\n",
            "3:5",
            "a list where an operation name belongs; expected an operation name",
        ),
        ("block: []\n", "1:8", "an empty operation list; expected 'block: [<op>, ...]'"),
        (
            "block:\n",
            "1:7",
            "the value '' where an operation name belongs; expected an operation name",
        ),
        (
            "block: [exec]\ndescription: [x]\n",
            "2:14",
            "a list where a description string belongs; expected a description string",
        ),
        (
            "protect: []\n",
            "1:10",
            "an empty protect list; expected 'protect: [{path: <path>, ops: [<op>, ...]}]'",
        ),
        (
            "protect: [/etc]\n",
            "1:11",
            "the string '/etc' in the protect list; expected a mapping like {path: /etc, ops: [write, unlink]}",
        ),
        (
            "protect:\n  - ops: [write]\n",
            "2:5",
            "a protect entry without 'path'; expected a mapping like {path: /etc, ops: [write, unlink]}",
        ),
        (
            "protect:\n  - path: /\n",
            "2:5",
            "a protect entry for '/' without 'ops'; expected a mapping like {path: /etc, ops: [write, unlink]}",
        ),
        (
            "protect:\n  - {path: /, op: [write]}\n",
            "2:15",
            "unknown key 'op' in a protect entry; expected 'path' or 'ops'",
        ),
        (
            "protect:\n  - {path: /, path: /, ops: [write]}\n",
            "2:15",
            "a second 'path' in one protect entry; expected a mapping like {path: /etc, ops: [write, unlink]}",
        ),
        (
            "protect:\n  - {path: etc, ops: [write]}\n",
            "2:12",
            "relative path 'etc'; expected an absolute path such as /etc",
        ),
        (
            "protect:\n  - {path: 17, ops: [write]}\n",
            "2:12",
            "the value '17' where an absolute path belongs; expected an absolute path",
        ),
        (
            "protect:\n  - {path: /, ops: []}\n",
            "2:20",
            "an empty operation list; expected 'ops: [<op>, ...]'",
        ),
        (
            "protect:\n  - path: /\n    ops: [write, bind]\n",
            "3:18",
            f"operation 'bind' has no path, so protect cannot scope it; expected one of {PATH_OPS} (use 'block bind' to deny it everywhere)",
        ),
        ("", "1:1", "the policy has no rules; expected at least one 'block' or 'protect' rule"),
        (
            "# just a comment\n",
            "1:1",
            "the policy has no rules; expected at least one 'block' or 'protect' rule",
        ),
        (
            "description: nothing\n",
            "1:1",
            "the policy has no rules; expected at least one 'block' or 'protect' rule",
        ),
    ],
)
def test_yaml_errors(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    assert error_of(path) == f"{path}:{where}: {message}"


def test_yaml_missing_path_and_too_many(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    path = write(
        tmp_path, "bad.yaml", f"block: exec\nprotect:\n  - path: {missing}\n    ops: write\n"
    )
    assert error_of(path) == (
        f"{path}:3:11: path '{missing}' cannot be used: No such file or directory; "
        "expected an existing file or directory"
    )
    dirs = [tmp_path / f"d{i}" for i in range(SW_POLICY_MAX_PATHS + 1)]
    for d in dirs:
        d.mkdir()
    path = write(
        tmp_path,
        "many.yml",
        "protect:\n" + "".join(f"- {{path: {d}, ops: [write]}}\n" for d in dirs),
    )
    assert error_of(path) == (
        f"{path}:{SW_POLICY_MAX_PATHS + 2}:10: too many protected paths: '{dirs[-1]}' would be "
        f"number {SW_POLICY_MAX_PATHS + 1}; expected at most {SW_POLICY_MAX_PATHS} distinct "
        "paths (SW_POLICY_MAX_PATHS)"
    )


def test_yaml_is_not_constructed(tmp_path: Path) -> None:
    # Tags are never constructed (no python/object), and a tagged value is not a string.
    marker = tmp_path / "pwned"
    path = write(
        tmp_path, "evil.yaml", f"block: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    assert error_of(path) == (
        f"{path}:1:8: a value tagged 'tag:yaml.org,2002:python/object/apply:os.system' where a "
        "list of operation names belongs; expected a list of operation names"
    )
    assert not marker.exists()
    path.write_text("!!map\nblock: !!str exec\nprotect: !custom\n  - {path: /, ops: [write]}\n")
    assert error_of(path) == (
        f"{path}:3:10: a value tagged '!custom' where a list of protect entries belongs; "
        "expected a list of protect entries"
    )
    path.write_text("!!map\nblock: !!str exec\nprotect:\n  - !thing {path: /, ops: [write]}\n")
    assert error_of(path) == (
        f"{path}:4:5: a value tagged '!thing' in the protect list; "
        "expected a mapping like {path: /etc, ops: [write, unlink]}"
    )
    path.write_text("!!map\nblock: !!str exec\n")
    assert read_policy(path).blocks == {"exec"}  # explicit standard tags are fine


# ----------------------------------------------------------------------- built-ins, load_policy


BUILTINS = {
    "no-network": ({"socket", "connect", "bind", "listen"}, {}),
    "no-exec": ({"exec"}, {}),
    "read-only-fs": ({"write", "unlink", "rename", "mkdir", "rmdir"}, {}),
    "protect-system": (
        {"bind", "listen"},
        {p: {"write", "unlink", "rename", "mkdir", "rmdir"} for p in ("/etc", "/usr", "/boot")},
    ),
}


def test_builtins_are_exactly_these() -> None:
    assert set(builtin_policies()) == set(BUILTINS)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_parses(name: str) -> None:
    blocks, protects = BUILTINS[name]
    policy = load_policy(name)
    assert policy.name == name
    assert policy.source == str(BUILTIN_POLICY_DIR / f"{name}.policy")
    assert policy.blocks == blocks
    assert {r.written: set(r.ops) for r in policy.protects} == protects
    assert policy.description, "each built-in documents itself in its header comment"
    assert load_policy(BUILTIN_POLICY_DIR / f"{name}.policy") == policy


def test_load_policy_paths_and_unknown_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ", ".join(sorted(BUILTINS))
    with pytest.raises(SwatchError) as info:
        load_policy("no-networking")
    assert str(info.value) == (
        f"no built-in policy or policy file named 'no-networking'; expected a path or one of: {names}"
    )
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "local", "block fork\n")
    assert load_policy("local").blocks == {"fork"}  # no built-in of that name: the file
    write(tmp_path, "no-exec", "block fork\n")
    assert load_policy("no-exec").blocks == {"exec"}  # a bare built-in name wins
    assert load_policy("./no-exec").blocks == {"fork"}  # a path is a path
    write(tmp_path, "x.yaml", "block: kill\n")
    assert load_policy("x.yaml").blocks == {"kill"}
    with pytest.raises(SwatchError, match="cannot read the policy: No such file"):
        load_policy("absent.policy")


# --------------------------------------------------------------------------- fuzzing

_WORDS = [
    *OPERATIONS, "block", "protect", "/", "/etc", "/tmp", "/etc/..", "/nonexistent", "etc",
    "#", "# c", "blok", "description", "path", "ops", ":", "-", "[", "]", "{", "}", ",",
    "&a", "*a", "!!str", "!!python/object:os.system", "'", '"', "---", "...", "? ", "|", ">",
    "\t", " ", "  ", "\n", "\n", "\n  ", "\n    ", "\0", "\x07", "é", "\ufeff", "%YAML 1.1",
    "~", "null", "yes", "17", "0x1f", "<<", "block:", "protect:", "ops:", "path:",
]  # fmt: skip

_yamlish = st.lists(st.sampled_from(_WORDS), max_size=40).map("".join)
_text = st.text(max_size=300)


def _check(parse: object, text: str, source: str) -> None:
    assert callable(parse)
    try:
        policy = parse(text, source)
    except PolicyError as err:
        message = str(err)
        assert "\n" not in message and "\r" not in message, repr(message)
        match = ONE_LINE_ERROR.match(message)
        assert match and match["src"] == source, repr(message)
        assert int(match["line"]) >= 1 and int(match["col"]) >= 1
        return
    assert isinstance(policy, Policy)
    assert policy.blocks | policy.operations <= set(OPERATIONS)
    assert len(policy.protects) <= SW_POLICY_MAX_PATHS
    for rule in policy.protects:
        assert os.path.isabs(rule.path) and rule.ops and rule.ops <= PATH_OPERATIONS


_FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.one_of(_text, _yamlish))
def test_fuzz_line_format(text: str) -> None:
    _check(parse_lines, text, "fuzz.policy")


@_FUZZ
@given(st.one_of(_text, _yamlish))
def test_fuzz_yaml(text: str) -> None:
    _check(parse_yaml, text, "fuzz.yaml")


@_FUZZ
@given(
    st.lists(st.sampled_from([*OPERATIONS, "exec", "bogus", ""]), max_size=4),
    st.lists(
        st.tuples(
            st.sampled_from(["/", "/etc", "/tmp", "/usr/", "/etc/../usr", "rel", "/no/such"]),
            st.lists(st.sampled_from([*OPERATIONS, "nope"]), max_size=3),
        ),
        max_size=4,
    ),
)
def test_fuzz_structured_forms_agree(
    blocks: list[str], protects: list[tuple[str, list[str]]]
) -> None:
    """Rules written both ways either both parse to the same rules or both fail."""
    line_text = "".join(f"block {op}\n" for op in blocks) + "".join(
        f"protect {p} {' '.join(ops)}\n" for p, ops in protects
    )
    yaml_text = "".join(f"block: [{op}]\n" for op in blocks) + (
        "protect:\n"
        + "".join(f"  - {{path: '{p}', ops: [{', '.join(ops)}]}}\n" for p, ops in protects)
        if protects
        else ""
    )
    results: list[tuple[frozenset[str], tuple[ProtectRule, ...]] | None] = []
    for parse, text, source in (
        (parse_lines, line_text, "s.policy"),
        (parse_yaml, yaml_text, "s.yaml"),
    ):
        try:
            policy = parse(text, source)
            results.append((policy.blocks, policy.protects))
        except PolicyError as err:
            assert ONE_LINE_ERROR.match(str(err)), str(err)
            results.append(None)
    assert results[0] == results[1], (line_text, yaml_text)


# --------------------------------------------------------------------------- phases


def test_phases_line_and_yaml_agree(tmp_path: Path) -> None:
    """Each phase is the base with its changes; the policy's own rules are their union."""
    for d in ("w", "w/logs", "w/data", "etc"):
        (tmp_path / d).mkdir()
    t = tmp_path
    lines = write(t, "a.policy", f"block listen connect\nprotect {t}/etc write unlink\n"
                  f"phase read_only\n  protect {t}/w write\n"
                  f"phase write_logs\n  protect {t}/w/data write\n  unblock listen\n"
                  f"  unprotect {t}/etc unlink\nphase open\n")
    yml = write(t, "a.yaml", f"block: [listen, connect]\nprotect: [{{path: {t}/etc, ops: "
                f"[write, unlink]}}]\nphases:\n  read_only: {{protect: [{{path: {t}/w, ops: "
                f"write}}]}}\n  write_logs:\n    protect: [{{path: {t}/w/data, ops: [write]}}]\n"
                f"    unblock: listen\n    unprotect: [{{path: {t}/etc, ops: unlink}}]\n"
                "  open:\n")
    for pol in (read_policy(lines), read_policy(yml)):
        assert pol.phase_names == ["read_only", "write_logs", "open"]
        got = {p.name: (sorted(p.blocks), {r.path: sorted(r.ops) for r in p.protects})
               for p in pol.phases}
        assert got == {
            "read_only": (["connect", "listen"], {f"{t}/etc": ["unlink", "write"],
                                                   f"{t}/w": ["write"]}),
            "write_logs": (["connect"], {f"{t}/etc": ["write"], f"{t}/w/data": ["write"]}),
            "open": (["connect", "listen"], {f"{t}/etc": ["unlink", "write"]})}
        assert pol.blocks == {"listen", "connect"}
        assert [(r.path, sorted(r.ops)) for r in pol.protects] == [
            (f"{t}/etc", ["unlink", "write"]), (f"{t}/w", ["write"]),
            (f"{t}/w/data", ["write"])]
        one = pol.in_phase("write_logs")
        assert (one.phases, one.blocks) == ((), {"connect"})
        with pytest.raises(SwatchError, match=r"no phase 'write_log' \(did you mean "
                           r"'write_logs'\?\); its phases: read_only, write_logs, open$"):
            pol.in_phase("write_log")


@pytest.mark.parametrize(("text", "where", "message"), [
    ("block exec\nunblock exec\n", "2:9", "'unblock' outside a phase"),
    ("block exec\nphase a\n  unblock connect\n", "3:11",
     "phase 'a' unblocks 'connect', which the base does not block"),
    ("block exec\nphase a\nphase a\n", "3:7", "a second phase named 'a'"),
    ("block exec\nphase a/b\n", "2:7", "phase name 'a/b' is not valid"),
    ("block exec\nphase\n", "2:6", "'phase' takes one name"),
    ("block exec\n" + "".join(f"phase p{i}\n" for i in range(17)), "18:7",
     "too many phases: 'p16' would be number 17"),
    ("phase a\nphase b\n", "1:1", "the policy has no rules"),
])
def test_phase_errors(tmp_path: Path, text: str, where: str, message: str) -> None:
    err = error_of(write(tmp_path, "p.policy", text))
    assert err.startswith(f"{tmp_path}/p.policy:{where}: {message}; expected "), err


def test_unprotect_what_the_base_does_not_protect(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "p.policy", f"protect {tmp_path} write\nphase a\n"
                         f"  unprotect {tmp_path} write unlink\n"))
    assert f":3:13: phase 'a' unprotects '{tmp_path}' unlink, which the base does not " \
           "protect" in err


def test_no_phases_means_none() -> None:
    pol = load_policy("no-exec")
    assert pol.phases == () and pol.phase_names == []
    with pytest.raises(SwatchError, match="policy no-exec defines no phases"):
        pol.phase_index("x")
