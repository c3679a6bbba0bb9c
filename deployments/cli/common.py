"""What the command groups share: the console, short commit ids, quiet Prefect, the stores."""
# heavy imports stay inside the functions that need them, so `tideline --help` starts fast

from __future__ import annotations

import csv
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from tideline.core.settings import load_settings

# without a terminal (a pipe, a file, a CI log) nothing is cut to 80 columns
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 1000)


def command_group(help_text: str, **options: Any) -> typer.Typer:
    """A group of commands: its help when called alone, and docstrings as Markdown, so that a
    command's summary in the group's list joins the docstring's lines (typer's rich mode keeps
    them, breaking the list's sentences mid-line)."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode="markdown",
                       **options)


def configured_lake():  # noqa: ANN202 - returns the configured Lake backend
    from tideline.lake import open_lake

    return open_lake(load_settings())


def model_registry():  # noqa: ANN202 - models.registry.ModelRegistry, imported lazily
    from tideline.models.registry import open_model_registry

    return open_model_registry(load_settings())


def short(commit_id: str) -> str:
    return commit_id[:12]


def prefect_quiet() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # the embedded server's 20 s start-up limit is too short on a busy 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@contextmanager
def flow_runtime(*flows: str, with_ray: bool = False) -> Iterator[None]:
    """What a command that runs flows sets up for them: quiet Prefect, and one Prefect API that
    the Ray workers report to as well (`tideline.core.process.prefect_api`). While the API
    server starts (a process of its own), the `flows` modules are imported and, `with_ray`,
    Ray is started, shared by every flow of the command and stopped at its end."""
    prefect_quiet()
    from tideline.core.process import kept_heap, prefect_api

    address = load_settings().ray_address if with_ray else None

    def alongside() -> None:
        if with_ray:
            from tideline.core.ray_runtime import start_ray

            start_ray(address)
        for module in flows:
            importlib.import_module(module)
    try:
        with kept_heap(), prefect_api(alongside=alongside):
            yield
    finally:
        if with_ray:
            import ray

            ray.shutdown()


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


FORMAT_OPTION = typer.Option(Format.table, "--format",
                             help="table for people; json or csv for scripts")


@dataclass
class Section:
    """One table of a listing: raw values per row (numbers stay numbers in json and csv)."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    shown: dict[str, Callable[[Any], str]] = field(default_factory=dict)
    """Column -> how a table shows its values (`cell` otherwise)."""


def cell(value: Any) -> str:
    """A value as a table shows it."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value)


def show(fmt: Format, *sections: Section, about: dict[str, Any] | None = None) -> None:
    """Print a listing: `about` (a record's own fields) and its sections, as rich tables, as
    one JSON document, or as CSV (the first section: the main table)."""
    if fmt is Format.json:
        body = {**(about or {}), **{s.title: [dict(zip(s.columns, row, strict=True))
                                              for row in s.rows] for s in sections}}
        print(json.dumps(body if about or len(sections) > 1 else body[sections[0].title],
                         indent=1, default=str))
    elif fmt is Format.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(sections[0].columns)
        writer.writerows([["" if v is None else v for v in row] for row in sections[0].rows])
    else:
        if about:
            console.print(" · ".join(f"{k} {cell(v)}" for k, v in about.items()),
                          highlight=False)
        for section in sections:
            table = Table(*section.columns, title=section.title)
            shown = [section.shown.get(c, cell) for c in section.columns]
            for row in section.rows:
                table.add_row(*(cell(v) if v is None else as_text(v)
                                for as_text, v in zip(shown, row, strict=True)))
            console.print(table)
