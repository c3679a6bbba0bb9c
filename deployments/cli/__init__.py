"""The `tideline` command line: run the pipeline and look into the lake.

One module a command group: `lake`, `features`, `models` (with `train`, `score`, `lineage`) and
`ops` (the pipeline and its operation); `common` holds what they share. Heavy imports (prefect,
ray, pandas) happen inside the commands that need them, so `--help` and the lake commands start
fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import typer
from rich.console import Console
from tideline.core.errors import TidelineError
from tideline.core.project import NoProject, find_project
from tideline.deployments.cli import doctor, erasure, models, ops, project
from tideline.deployments.cli.common import command_group
from tideline.deployments.cli.experiment import experiment_app
from tideline.deployments.cli.features import features_app
from tideline.deployments.cli.lake import lake_app
from tideline.deployments.cli.models import models_app
from typer.core import TyperGroup


class _Commands(TyperGroup):
    """The top-level group, noting whether the command line asks for help (click parses a
    subcommand's `--help` only after the group's callback has run)."""

    def invoke(self, ctx: click.Context) -> object:
        ctx.meta["tideline.help"] = any(arg in ("--help", "-h") for arg in ctx.args)
        return super().invoke(ctx)


app = command_group("tideline: an ML feature platform for churn models.", cls=_Commands)
WITHOUT_PROJECT = {"init", "demo", "doctor", "schema"}
"""Commands that need no project file."""


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        print(f"tideline {version('tideline')}")
        raise typer.Exit()


@app.callback()
def options(
    ctx: typer.Context,
    project: Path = typer.Option(None, "--project", help="The project file (tideline.yaml) or "
                                 "its directory; default: TIDELINE_PROJECT, else tideline.yaml "
                                 "in the working directory."),
    profile: str = typer.Option(None, "--profile", help="The project file's settings profile "
                                "(default: TIDELINE_PROFILE)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print tideline's version and exit."),
) -> None:
    """Find the project every command works on: a command other than init, demo, doctor and
    schema without one stops here with one line saying how to start one."""
    # the environment carries them to every settings object of this process and its children
    if project is not None:
        os.environ["TIDELINE_PROJECT"] = str(find_project(project))
    if profile is not None:
        os.environ["TIDELINE_PROFILE"] = profile
    if ctx.invoked_subcommand in WITHOUT_PROJECT or ctx.meta.get("tideline.help"):
        return
    from tideline.core.settings import load_settings

    settings = load_settings()
    if settings.project is None and settings.project_file is None:
        raise NoProject(Path.cwd())


# the top-level commands, in the order `tideline --help` lists them
for name, command in (
    ("init", project.init), ("demo", project.demo), ("plan", project.plan),
    ("run", ops.run), ("ingest", ops.ingest), ("serve", ops.serve), ("stream", ops.stream),
    ("train", models.train), ("score", models.score_command), ("monitor", ops.monitor),
    ("retrain", ops.retrain), ("worker", ops.worker), ("server", ops.server),
    ("deploy", ops.deploy), ("lineage", models.lineage_command), ("forget", erasure.forget),
    ("doctor", doctor.doctor), ("schema", project.schema),
):
    app.command(name)(command)
app.add_typer(lake_app, name="lake")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
models_app.add_typer(experiment_app, name="experiment")


def main() -> None:
    """Console entry point: a `TidelineError` is printed as one clear line, without a traceback."""
    try:
        app()
    except TidelineError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
