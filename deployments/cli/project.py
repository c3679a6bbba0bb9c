"""The project's own commands: `init` (a new project from the template), `demo` (the bundled
demo as a project of its own, run end to end), `plan` (check without running) and `schema`
(the JSON Schema of `tideline.yaml`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import typer
from rich.table import Table
from tideline.core.errors import ConfigError
from tideline.core.project import FILE_NAME
from tideline.core.settings import load_settings
from tideline.deployments.cli.common import FORMAT_OPTION, Format, console


def init(directory: Path = typer.Argument(..., help="The new project's directory (new or "
                                                    "empty)."),
         name: str = typer.Option(None, help="The project's name; default: the directory's."),
         ) -> None:
    """Start a project: tideline.yaml, sample data, prefect.yaml and a README of next steps."""
    from tideline.deployments.project import init_project

    written = init_project(directory, name)
    for path in written:
        console.print(f"  wrote {path}", highlight=False)
    console.print(f"next: cd {directory} && tideline plan && tideline run", highlight=False)


def demo(directory: Path = typer.Argument(Path("tideline-demo"), help="Where the demo project "
                                                                      "lives."),
         run_id: str = typer.Option(None, help="Re-use a run id to re-run it idempotently."),
         ) -> None:
    """Create the bundled demo project (generated sources of four kinds, deliberate defects and
    drift) in DIRECTORY and run it end to end."""
    from tideline.demo.project import PROJECT_FILE
    from tideline.deployments.cli.ops import run

    project = directory / FILE_NAME
    if project.exists() and project.read_bytes() != PROJECT_FILE.read_bytes():
        raise ConfigError(f"{project} exists and is not the demo's; choose another directory")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_FILE, project)
    console.print(f"demo project: {project.resolve()}", highlight=False)
    os.environ["TIDELINE_PROJECT"] = str(project.resolve())
    run(run_id=run_id)


def plan(fmt: Format = FORMAT_OPTION) -> None:
    """Check the project without running it (columns and types, windows, entity keys,
    references, owners, label sources, the first records of each file and SQL source) and
    show what would change in the feature registry; exit 1 on an error."""
    from tideline.deployments.project import plan_project

    found = plan_project(load_settings())
    if fmt is Format.json:
        import json
        from dataclasses import asdict

        print(json.dumps(asdict(found), indent=1, default=str))
    else:
        console.print(f"project {found.project}: {len(found.sources)} sources, "
                      f"{len(found.views)} views, model {found.model or '-'}", highlight=False)
        for line in found.sources_read:
            console.print(f"source {line}", highlight=False)
        for error in found.errors:
            console.print(f"[bold red]error:[/] {error}", highlight=False)
        if not found.errors:
            table = Table("view", "change", "registered", "declared",
                          title="feature registry after a run")
            for name in found.added:
                table.add_row(name, "[green]added[/]", "-", found.views[name])
            for name, old, new in found.changed:
                table.add_row(name, "[yellow]new version[/]", old, new)
            for name in found.unchanged:
                table.add_row(name, "unchanged", found.views[name], found.views[name])
            for name in found.removed:
                table.add_row(name, "[red]no longer declared[/] (versions stay readable)",
                              "registered", "-")
            for name in found.discovered:
                table.add_row(name, "discovered (not declared here)", "registered", "-")
            console.print(table)
    if found.errors:
        raise typer.Exit(1)


def schema() -> None:
    """Print the JSON Schema of tideline.yaml (for editors: `# yaml-language-server:
    $schema=tideline.schema.json`)."""
    from tideline.deployments.project import schema_text

    print(schema_text(), end="")
