"""The click group classes behind `swatch`: help in sections, and the old hyphenated spellings.

- ``RootGroup`` (swatch itself) lists its commands by section (each command's
  ``rich_help_panel``: Trace, Policy, Targets …), then the old spellings it still accepts.
- A group whose class is ``HyphenAliasedGroup`` (``typer.Typer(cls=HyphenAliasedGroup)``) is
  also reachable the old, flat way: `swatch policy-load` is `swatch policy load`. Completion
  offers `policy` for `swatch <TAB>`, the flat spellings for a part of the name (`swatch
  poli<TAB>` → policy-load …, as before the groups), and `swatch policy <TAB>` the group's
  commands.
- ``RootGroup.lazy`` names commands by the module that defines them (``Lazy``): a module is
  imported, and its commands built, only when one of them is used — `swatch run` does not
  import the audit log or the policy compiler. `swatch --help` and completion build them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

from typer.core import TyperGroup

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import Command, Context, HelpFormatter
    from typer._click.shell_completion import CompletionItem
except ImportError:  # pragma: no cover - older typer on the system click
    from click import Command, Context, HelpFormatter  # type: ignore[assignment]
    from click.shell_completion import CompletionItem  # type: ignore[assignment]

OTHER = "Other"


class HyphenAliasedGroup(TyperGroup):
    """A command group that also answers to `swatch GROUP-COMMAND` (see the module doc)."""


@dataclass(frozen=True)
class Lazy:
    """Commands of the root defined in one module, built when one of them is first used.

    ``source`` is "module:attribute", a ``typer.Typer``; ``names`` are the commands it adds at
    the top level, or with ``group`` the one group it is (as
    ``add_typer``), listed in ``panel`` of `swatch --help`."""

    source: str
    names: tuple[str, ...]
    panel: str
    group: bool = False

    def build(self, markup: Any) -> dict[str, Command]:
        """Import the module and build its commands as the root's own registration would."""
        import typer.main

        module, _, attr = self.source.partition(":")
        sub = getattr(importlib.import_module(module), attr)
        holder = typer.Typer(rich_markup_mode=markup)
        if self.group:
            holder.add_typer(sub, name=self.names[0], rich_help_panel=self.panel)
        else:
            for info in sub.registered_commands:
                info.rich_help_panel = self.panel
                holder.registered_commands.append(info)
        built = dict(typer.main.get_group(holder).commands)
        if sorted(built) != sorted(self.names):
            raise RuntimeError(f"{self.source} defines {sorted(built)}, cli/app.py lists "
                               f"{sorted(self.names)}: update its Lazy entry")
        return built


class LazyCommands(MutableMapping[str, Command]):
    """A group's ``commands``: every name known up front (in typer's order: the commands,
    then the groups), each module's commands built on the first lookup of one of them."""

    def __init__(self, eager: dict[str, Command], lazy: tuple[Lazy, ...], markup: Any) -> None:
        self._built = dict(eager)
        self._source = {name: entry for entry in lazy for name in entry.names}
        self._order = ([n for e in lazy if not e.group for n in e.names]
                       + [n for n in eager if n not in self._source]
                       + [n for e in lazy if e.group for n in e.names])
        self._markup = markup

    def __getitem__(self, name: str) -> Command:
        if name not in self._built and name in self._source:
            self._built.update(self._source[name].build(self._markup))
        return self._built[name]

    def __setitem__(self, name: str, cmd: Command) -> None:
        if name not in self._order:
            self._order.append(name)
        self._built[name] = cmd

    def __delitem__(self, name: str) -> None:
        self._order.remove(name)
        self._built.pop(name, None)
        self._source.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._order


class RootGroup(TyperGroup):
    """`swatch`: sections in --help, and `GROUP-COMMAND` for every HyphenAliasedGroup; the
    commands in ``lazy`` built only when used."""

    lazy: ClassVar[tuple[Lazy, ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.lazy:
            self.commands = LazyCommands(dict(self.commands), self.lazy,
                                         self.rich_markup_mode)

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)  # the names alone: nothing is built

    def aliases(self, ctx: Context) -> dict[str, tuple[str, str]]:
        """Old spelling → (group, command), e.g. 'policy-load' → ('policy', 'load')."""
        out = {}
        for name, cmd in self.commands.items():
            if isinstance(cmd, HyphenAliasedGroup):
                for sub in cmd.list_commands(ctx):
                    out[f"{name}-{sub}"] = (name, sub)
        return out

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        cmd = self.commands.get(cmd_name)
        if cmd is not None:
            return cmd
        group, sep, sub = cmd_name.partition("-")
        parent = self.commands.get(group)
        if sep and isinstance(parent, HyphenAliasedGroup):
            return parent.get_command(ctx, sub)
        return None

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        shown = [(n, c) for n in self.list_commands(ctx)
                 if (c := self.commands.get(n)) is not None and not c.hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(n) for n, _ in shown)
        for name, cmd in shown:
            panel = getattr(cmd, "rich_help_panel", None) or OTHER
            sections.setdefault(panel, []).append((name, cmd.get_short_help_str(limit)))
        for panel in sorted(sections, key=lambda p: p == OTHER):  # Other last
            with formatter.section(panel):
                formatter.write_dl(sections[panel])
        old = self.aliases(ctx)
        if old:
            with formatter.section("Old spellings (still accepted)"):
                formatter.write_dl([(a, f"= swatch {g} {s}") for a, (g, s) in old.items()])

    def shell_complete(self, ctx: Context, incomplete: str) -> list[Any]:
        """Command names. A HyphenAliasedGroup is offered by its name for an empty word and
        when its name is typed out, by its flat spellings for a part of one (`poli` →
        policy-load, policy-summary, policy-unload), as the completion scripts installed
        before the groups existed did."""
        items = super().shell_complete(ctx, incomplete)
        if not incomplete or incomplete.startswith("-"):
            return items
        items = [i for i in items if not (isinstance(self.commands.get(i.value),
                                                     HyphenAliasedGroup)
                                          and i.value != incomplete)]
        for alias, (group, sub) in self.aliases(ctx).items():
            if alias.startswith(incomplete):
                cmd = self.commands[group].get_command(ctx, sub)  # type: ignore[attr-defined]
                items.append(CompletionItem(alias, help=cmd.get_short_help_str() if cmd else ""))
        return items
