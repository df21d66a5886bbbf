"""The click group classes behind `swatch`: help in sections, and the old hyphenated spellings.

- ``RootGroup`` (swatch itself) lists its commands by section (each command's
  ``rich_help_panel``: Trace, Policy, Targets …), then the old spellings it still accepts.
- A group whose class is ``HyphenAliasedGroup`` (``typer.Typer(cls=HyphenAliasedGroup)``) is
  also reachable the old, flat way: `swatch policy-load` is `swatch policy load`. Completion
  offers `policy` for `swatch <TAB>`, the flat spellings for a part of the name (`swatch
  poli<TAB>` → policy-load …, as before the groups), and `swatch policy <TAB>` the group's
  commands.
"""

from __future__ import annotations

from typing import Any

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


class RootGroup(TyperGroup):
    """`swatch`: sections in --help, and `GROUP-COMMAND` for every HyphenAliasedGroup."""

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
