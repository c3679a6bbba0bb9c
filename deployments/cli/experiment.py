"""`tideline models experiment …`: put a challenger in shadow or in a split against the
champion, follow the experiment, stop it."""
# heavy imports stay inside the command bodies, so `tideline --help` starts fast

from __future__ import annotations

import json

import typer
from tideline.deployments.cli.common import (
    FORMAT_OPTION,
    Format,
    Section,
    command_group,
    configured_lake,
    console,
    model_registry,
    show,
)

experiment_app = command_group(
    "Champion and challenger: shadow scoring, an A/B split, the outcome.")


@experiment_app.command("start")
def experiment_start(
    challenger: str = typer.Argument(help="MODEL:VERSION of the challenger (churn:3)"),
    mode: str = typer.Option("shadow", help="shadow (recorded only) or split (acted on)."),
    share: float = typer.Option(0.5, help="Split: the share of customers on the challenger."),
    name: str = typer.Option(None, help="Default: MODEL-vCHAMPION-vs-vCHALLENGER-MODE."),
    metric: str = typer.Option(
        "flagged_churn_rate",
        help="The primary metric, declared now: flagged_churn_rate (churners among those "
             "flagged high-risk, higher is better) or churn_rate (lower is better)."),
    min_effect: float = typer.Option(0.05, help="The smallest difference worth detecting."),
    baseline: float = typer.Option(
        None, help="The champion's expected rate; default: its test precision "
                   "(flagged_churn_rate) or churn rate (churn_rate)."),
    alpha: float = typer.Option(0.05, help="Significance level, two-sided."),
    power: float = typer.Option(0.8, help="Probability of detecting `min_effect`."),
) -> None:
    """Start an experiment of the model's champion against a challenger version. The sample
    size per arm is fixed now, from the metric, the smallest effect, alpha and power."""
    from tideline.models.experiment import Experiment

    model, _, version = challenger.partition(":")
    version = version.removeprefix("v")
    if not version.isdigit():
        raise typer.BadParameter(f"{challenger!r}: give MODEL:VERSION (churn:3)")
    registry = model_registry()
    champion = registry.champion(model)
    if champion is None:
        raise typer.BadParameter(f"model {model!r} has no champion to challenge")
    m = champion.metrics
    expected = baseline if baseline is not None else (
        m["precision"] if metric == "flagged_churn_rate" else m["positives"] / m["rows"])
    started = registry.start_experiment(Experiment(
        name=name or f"{model}-v{champion.version}-vs-v{version}-{mode}", model=model,
        champion=champion.version, challenger=int(version), mode=mode, share=share,  # type: ignore[arg-type]
        metric=metric, baseline=round(float(expected), 6), min_effect=min_effect, alpha=alpha,
        power=power))
    acted = (f"{started.share:.0%} of customers get its scores as the ones acted on"
             if started.mode == "split" else "its scores are recorded, never acted on")
    console.print(f"experiment {started.name}: {model}:v{started.challenger} challenges "
                  f"{champion.ref} in {started.mode} ({acted}); {started.metric} from "
                  f"{started.baseline:.3f}, {started.required_per_arm:,} customers per arm "
                  f"to detect {started.min_effect} at alpha {started.alpha}, power "
                  f"{started.power}. `tideline score` scores with both from now on.")


@experiment_app.command("status")
def experiment_status(
    name: str = typer.Argument(None, help="One experiment's outcome; default: all of them."),
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Experiments and their latest outcome (measured by `tideline monitor`)."""
    registry = model_registry()
    if name is None:
        show(fmt, Section("experiments", [
            "experiment", "model", "champion", "challenger", "mode", "share", "metric",
            "per arm", "status", "started (UTC)"],
            [[e.name, e.model, e.champion, e.challenger, e.mode, e.share, e.metric,
              e.required_per_arm, e.status, e.started_at] for e in registry.experiments()]))
        return
    experiment = registry.experiment(name)
    outcome = experiment.outcome
    lake = configured_lake()
    path = f"experiments/{name}/outcome.json"
    if "verdict" not in outcome and lake.exists("main", path):  # measured, not concluded
        outcome = {**json.loads(lake.get("main", path)), **outcome}
    verdict = outcome.get("verdict", {})
    about = {"experiment": name, "status": experiment.status, "mode": experiment.mode,
             "metric": experiment.metric, "per arm": experiment.required_per_arm,
             "verdict": verdict.get("message", "not measured yet: no scored day's label "
                                               "horizon has passed"),
             "days measured": outcome.get("days", []), "waiting": outcome.get("waiting", [])}
    show(fmt, Section("arms", ["arm", "model", "customers", "flagged", "churned", "counted",
                               "rate", "low", "high"],
                      [[a["arm"], a["model"], a["customers"], a["flagged"], a["churned"],
                        a["counted"], a["rate"], a["low"], a["high"]]
                       for a in outcome.get("arms", [])]), about=about)


@experiment_app.command("stop")
def experiment_stop(name: str = typer.Argument(help="The running experiment")) -> None:
    """Stop an experiment without a verdict: the champion scores alone again."""
    stopped = model_registry().end_experiment(name, "stopped", {"stopped": "by hand"})
    console.print(f"experiment {stopped.name} stopped; {stopped.model}'s champion scores "
                  "alone again")
