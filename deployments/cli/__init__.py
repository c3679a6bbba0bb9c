"""The `tideline` command line: run the pipeline and look into the lake.

One module a command group: `lake`, `features`, `models` (with `train`, `score`, `lineage`) and
`ops` (the pipeline and its operation); `common` holds what they share. Heavy imports (prefect,
ray, pandas) happen inside the commands that need them, so `--help` and the lake commands start
fast.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from tideline.core.errors import TidelineError
from tideline.deployments.cli import models, ops
from tideline.deployments.cli.features import features_app
from tideline.deployments.cli.lake import lake_app
from tideline.deployments.cli.models import models_app

app = typer.Typer(help="tideline: an ML feature platform for churn models.", no_args_is_help=True)
# the top-level commands, in the order `tideline --help` lists them
for name, command in (
    ("run", ops.run), ("ingest", ops.ingest), ("serve", ops.serve), ("stream", ops.stream),
    ("train", models.train), ("score", models.score_command), ("monitor", ops.monitor),
    ("retrain", ops.retrain), ("worker", ops.worker), ("server", ops.server),
    ("deploy", ops.deploy), ("lineage", models.lineage_command),
):
    app.command(name)(command)
app.add_typer(lake_app, name="lake")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")


def main() -> None:
    """Console entry point: a `TidelineError` is printed as one clear line, without a traceback."""
    try:
        app()
    except TidelineError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
