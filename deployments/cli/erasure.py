"""`tideline forget`: erase customers from main, the online store and every later run."""
# heavy imports (Prefect, the flow) stay inside the command body, so `tideline --help` starts fast

from __future__ import annotations

import typer
from rich.table import Table
from tideline.deployments.cli.common import console, flow_runtime, short


def forget(
    keys: list[str] = typer.Argument(..., help="The entity keys to erase."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit record; name the "
                               "request, not the person)."),
    column: str = typer.Option(None, "--column", help="The key column (default: the model's "
                               "entity key, else the feature views')."),
    request: str = typer.Option(None, "--request-id", help="Re-use a request id to re-run it "
                                "idempotently (default: the time)."),
) -> None:
    """Erase customers: their rows from main's raw, clean, quarantine, feature, training-set and
    score tables (one published commit with an audit record), their online-store entries and
    scores, and keep them out of every later ingestion (the erasure list). Older commits keep
    the rows until the lake's garbage collection removes them."""
    from pydantic import SecretStr

    with flow_runtime("tideline.flows.forget"):
        from tideline.flows.forget import forget as forget_flow

        result = forget_flow([SecretStr(key) for key in keys], reason=reason, column=column,
                             request=request)
    record = result.record
    table = Table("table", "rows removed", title=f"erasure {record.request}: {record.keys} "
                  f"{record.column} key(s)")
    for name, rows in record.removed.items():
        table.add_row(name, f"{rows:,}")
    for view, rows in result.online.items():
        table.add_row(f"online: {view}", f"{rows:,}")
    table.add_row("scores (database)", f"{result.scores:,}")
    console.print(table)
    console.print(f"main at {short(result.commit)}; audit record erasure/requests/"
                  f"{record.request}.json; {record.objects} object(s) rewritten")
    if record.skipped:
        console.print(f"[yellow]not searched (not Parquet):[/] {', '.join(record.skipped[:8])}"
                      + (", ..." if len(record.skipped) > 8 else ""))
