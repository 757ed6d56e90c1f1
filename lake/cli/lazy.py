"""Commands loaded when they are called: a one-shot `lake sql` or `lake table list` does not
import the job, image, ingest, policy and server commands (and the batch, ingestion and Flight
code behind them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup


@dataclass(frozen=True)
class Lazy:
    """A command (or group) of the `lake` app that `load` adds to the Typer app it is given;
    `help` is its help text as `lake --help` summarises it without loading it (a test keeps it
    equal to the command's own)."""

    load: Callable[[typer.Typer], None]
    help: str


class LazyGroup(TyperGroup):
    """The `lake` group: its own commands, plus those of `lazy`, each loaded on first use."""

    lazy: dict[str, Lazy] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *(n for n in self.lazy if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands:
            # An unknown name loads them all, so that "Did you mean ...?" knows every command.
            for name in [cmd_name] if cmd_name in self.lazy else list(self.lazy):
                if name not in self.commands:
                    self._load(self.lazy[name])
        return self.commands.get(cmd_name)

    def _load(self, lazy: Lazy) -> None:
        app = typer.Typer(rich_markup_mode=None)
        lazy.load(app)
        for name, cmd in typer.main.get_group(app).commands.items():
            self.commands.setdefault(name, cmd)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        # `lake --help` lists the lazy commands by their summary, without importing them.
        names = [
            n for n in self.list_commands(ctx) if n in self.lazy or not self.commands[n].hidden
        ]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            cmd = self.commands.get(name)
            if cmd is None:
                rows.append((name, make_default_short_help(self.lazy[name].help, limit)))
            else:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
