"""`tideline models …` and the top-level `train`, `score` and `lineage` (registered by the
package, in the order of `tideline --help`)."""
# heavy imports (Prefect flows, the lineage's stores) stay inside the command bodies, so
# `tideline --help` starts fast

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Table
from tideline.core.settings import load_settings
from tideline.deployments.cli.common import (
    FORMAT_OPTION,
    Format,
    Section,
    command_group,
    console,
    flow_runtime,
    model_registry,
    short,
    show,
)

models_app = command_group("Trained models: versions, stages, metrics, lineage.")


def print_training(outcome) -> None:  # noqa: ANN001 - flows.train.TrainingOutcome
    record, decision = outcome.model, outcome.decision
    table = Table("model", "ROC-AUC", "PR-AUC", "precision", "recall", "F1", "lift@10%",
                  title=f"{record.ref} on the test fold")
    for name, m in (("LightGBM", record.metrics), ("baseline", record.baseline_metrics)):
        table.add_row(name, f"{m['roc_auc']:.4f}", f"{m['pr_auc']:.4f}", f"{m['precision']:.3f}",
                      f"{m['recall']:.3f}", f"{m['f1']:.3f}", f"{m['lift_top_10']:.2f}")
    console.print(table)
    if decision.promoted:
        console.print(f"[green]{record.ref} is the champion[/]"
                      + (f" (beat {decision.champion}: {decision.champion_roc_auc:.4f})"
                         if decision.champion else ""))
    else:
        console.print(f"[yellow]{record.ref} stays a candidate:[/] " + "; ".join(decision.reasons))


def print_scoring(run) -> None:  # noqa: ANN001 - flows.score.ScoringRun
    console.print(f"{run.model} scored {run.customers:,} customers as of {run.as_of}: "
                  f"{run.high_risk:,} at high risk; scores in {run.path} and the `scores` table")


def _model_ref(ref: str) -> tuple[str, int | None]:
    name, _, version = ref.partition(":")
    version = version.removeprefix("v")
    if version and not version.isdigit():
        raise typer.BadParameter(f"{ref!r}: give NAME or NAME:VERSION (churn:3)")
    return name, int(version) if version else None


def train(
    run_id: str = typer.Option(None, help="Re-use a run id (its feature build is reused)."),
    model: str = typer.Option(None, help="`module:attribute` of a ModelSpec or a YAML file; "
                                         "default: the project's model."),
) -> None:
    """Train a model on point-in-time features from main, register it, run the promotion
    gate."""
    with flow_runtime("tideline.flows.train", with_ray=True):
        from tideline.flows.train import train as train_flow

        print_training(train_flow(run_id=run_id, model=model))


def score_command(
    run_id: str = typer.Option(None, help="Re-use a run id."),
    model: str = typer.Option(None, help="`module:attribute` of a ModelSpec or a YAML file; "
                                         "default: the project's model."),
    as_of: datetime = typer.Option(None, formats=["%Y-%m-%d"],
                                   help="Score as of this day; default: the newest features."),
) -> None:
    """Score every active customer with the champion: probability, risk and reasons, into the
    lake and the `scores` table."""
    with flow_runtime("tideline.flows.score"):
        from tideline.flows.score import score

        print_scoring(score(run_id=run_id, model=model,
                             as_of=as_of.date() if as_of else None))


def lineage_command(ref: str = typer.Argument(help="MODEL or MODEL:VERSION")) -> None:
    """Where a model came from, down to the ingestion runs."""
    from rich.tree import Tree
    from tideline.features.registry import open_registry
    from tideline.lake import open_lake
    from tideline.models.lineage import lineage

    settings = load_settings()
    chain = lineage(model_registry().get(*_model_ref(ref)), open_registry(settings),
                    open_lake(settings))
    ts = chain["training_set"]
    tree = Tree(f"[bold]{chain['model']}[/] ({chain['stage']}) · {chain['code_version']} · "
                f"{chain['artifacts']}")
    node = tree.add(f"training set {ts['tag']} ({ts['rows']:,} rows) @ {short(ts['commit'])},"
                    f" features read at {short(ts['feature_commit'])}")
    for view in chain["feature_views"]:
        branch = node.add(f"{view['view']}@{view['version']} · {view['owner']} · source "
                          f"clean/{view['source_dataset']}")
        for b in view["builds"]:
            branch.add(f"as of {b['as_of']}: build {b['run_id']} ({b['rows']:,} rows) @ "
                       f"{short(b['published_commit'])} ← source {short(b['source_commit'])}"
                       f" (ingestion run {b['ingestion_run']}, {b['ingested_at']})")
    console.print(tree)


@models_app.command("list")
def models_list(fmt: Format = FORMAT_OPTION) -> None:
    """Every model version: stage, test metrics, training set."""
    show(fmt, Section("models", ["model", "stage", "ROC-AUC", "PR-AUC", "baseline AUC",
                                 "training set", "created (UTC)"],
                      [[r.ref, r.stage, r.roc_auc, r.pr_auc, r.baseline_metrics["roc_auc"],
                        r.training_set_tag, r.created_at] for r in model_registry().models()]))


@models_app.command("describe")
def models_describe(ref: str = typer.Argument(help="NAME (the champion) or NAME:VERSION"),
                    fmt: Format = FORMAT_OPTION) -> None:
    """A model's metrics, parameters, lineage and promotion history (csv: the metrics)."""
    registry = model_registry()
    r = registry.get(*_model_ref(ref))
    about = {"model": r.ref, "stage": r.stage, "owner": r.owner, "code": r.code_version,
             "artifacts": f"{r.artifact_path} @ {short(r.artifact_commit)}",
             "training set": f"{r.training_set_tag} @ {short(r.training_set_commit)}",
             "threshold": r.threshold, "parameters": dict(sorted(r.params.items())),
             "feature views": r.feature_views}
    metrics = Section("test fold", ["metric", "LightGBM", "baseline"],
                      [[key, r.metrics[key], r.baseline_metrics[key]]
                       for key in ("roc_auc", "pr_auc", "precision", "recall", "f1",
                                   "lift_top_10", "brier", "rows", "positives")])
    history = Section("history", ["version", "event", "detail"])
    for event in registry.events(r.name):
        detail = event["detail"]
        text = "; ".join(detail.get("reasons", [])) if isinstance(detail, dict) else str(detail)
        if isinstance(detail, dict) and detail.get("champion"):
            text += f" (vs {detail['champion']}: {detail['champion_roc_auc']:.4f})"
        history.rows.append([f"v{event['version']}", event["event"], text])
    show(fmt, metrics, history, about=about)


@models_app.command("promote")
def models_promote(ref: str = typer.Argument(help="NAME:VERSION to make the champion")) -> None:
    """Make a version the champion by hand (the one before is archived)."""
    name, version = _model_ref(ref)
    if version is None:
        raise typer.BadParameter("give the version to promote: NAME:VERSION")
    registry = model_registry()
    record = registry.get(name, version)
    registry.set_champion(record, {"by": "hand", "reasons": []})
    console.print(f"{record.ref} is the champion")


@models_app.command("lineage")
def models_lineage(ref: str = typer.Argument(help="NAME (the champion) or NAME:VERSION")) -> None:
    """model → training set → feature views and builds → source commits and ingestion runs."""
    lineage_command(ref)
