"""Tasks around champion/challenger experiments: the challenger's scores beside the champion's,
the experiment's rows into the lake, the outcome and report, the verdict's event, and the
promotion or retirement it leads to."""
from __future__ import annotations

import json
from datetime import date

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from tideline.core.settings import Settings
from tideline.features.store import FeatureStore
from tideline.lake.publish import find_published, publish
from tideline.lake.tables import write_table
from tideline.models.experiment import (
    Experiment,
    Measured,
    measure,
    report_html,
    scores_path,
    split_scores,
)
from tideline.models.registry import ModelRecord, ModelRegistry
from tideline.models.scoring import check_versions
from tideline.models.spec import ModelSpec
from tideline.monitoring.events import Emitted, emit, experiment_event
from tideline.monitoring.mail import Delivery, Mail, send_mails


@task(name="challenger", cache_policy=NONE)
def challenger_for(registry: ModelRegistry, store: FeatureStore, experiment: Experiment
                   ) -> ModelRecord:
    record = registry.get(experiment.model, experiment.challenger)
    check_versions(record, store.views)
    return record


@task(name="split-scores", cache_policy=NONE)
def split_experiment_scores(experiment: Experiment, champion: pd.DataFrame,
                            challenger: pd.DataFrame, key: str, day: date
                            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scores acted on and the experiment's rows (`models.experiment.split_scores`)."""
    return split_scores(experiment, champion, challenger, key, day)


@task(name="publish-experiment-scores", retries=1, cache_policy=NONE)
def publish_experiment_scores(store: FeatureStore, experiment: Experiment, day: date,
                              rows: pd.DataFrame, run_id: str) -> str:
    """Every customer's arm and both models' scores of the day, on main through a run."""
    path = scores_path(experiment.name, day)
    arms = rows["arm"].value_counts()
    with publish(store.lake, f"{run_id}-experiment",
                 message=f"experiment {experiment.name} scores as of {day}",
                 metadata={"stage": "experiment", "experiment": experiment.name,
                           "path": path, "as_of": f"{day}"}) as run:
        write_table(store.lake, run.branch, path, rows)
    create_table_artifact(
        key="experiment-arms", description=f"experiment {experiment.name} ({experiment.mode}) "
                                           f"as of {day}: who was scored by which model",
        table=[{"arm": arm, "model": f"{experiment.model}:v{version}",
                "customers": int(arms.get(arm, 0)), "acted on": experiment.mode == "split"
                or arm == "champion"}
               for arm, version in (("champion", experiment.champion),
                                    ("challenger", experiment.challenger))])
    return path


@task(name="measure-experiment", cache_policy=NONE)
def measure_experiment(store: FeatureStore, registry: ModelRegistry, spec: ModelSpec,
                       experiment: Experiment) -> Measured | None:
    thresholds = {arm: registry.get(experiment.model, version).threshold
                  for arm, version in (("champion", experiment.champion),
                                       ("challenger", experiment.challenger))}
    return measure(store.lake, "main", spec.label, experiment, thresholds)


@task(name="write-experiment-report", retries=1, cache_policy=NONE)
def write_experiment_report(store: FeatureStore, measured: Measured, run_id: str
                            ) -> dict[str, str]:
    """The HTML report and the outcome as JSON on main; their paths and the commit."""
    name = measured.experiment.name
    prefix = f"experiments/{name}"
    paths = {"html": f"{prefix}/report.html", "outcome": f"{prefix}/outcome.json"}
    done = find_published(store.lake, f"{run_id}-experiment-report")
    if done is None:
        with publish(store.lake, f"{run_id}-experiment-report",
                     message=f"experiment {name}: {measured.verdict.status}",
                     metadata={"stage": "experiment-report", "experiment": name}) as run:
            store.lake.put(run.branch, paths["html"], report_html(measured).encode())
            store.lake.put(run.branch, paths["outcome"], json.dumps(
                measured.as_dict(), indent=1, default=str).encode())
        done = run.published
    v = measured.verdict
    create_markdown_artifact(
        key="experiment-outcome",
        markdown=f"# Experiment `{name}`: {v.status}\n\n{v.message}\n\n"
                 "| arm | model | customers | counted | rate [95%] |\n|---|---|---|---|---|\n"
                 + "".join(f"| {a.arm} | {a.model} | {a.customers:,} | {a.counted:,} | "
                           f"{a.rate:.4f} [{a.low:.4f}, {a.high:.4f}] |\n"
                           for a in measured.arms)
                 + f"\nReport `{paths['html']}` at commit `{done.id[:12]}`",
        description=f"experiment {name}")
    return {**paths, "commit": done.id}


@task(name="conclude-experiment", cache_policy=NONE)
def conclude_experiment(registry: ModelRegistry, measured: Measured, report: dict[str, str]
                        ) -> Emitted | None:
    """A split with a significant verdict ends (`concluded`, with its outcome) and announces
    it; anything else keeps running."""
    if measured.experiment.mode != "split" or measured.verdict.status != "significant":
        return None
    registry.end_experiment(measured.experiment.name, "concluded",
                            {**measured.as_dict(), "report": report})
    return emit(experiment_event(measured, report))


@task(name="act-on-verdict", cache_policy=NONE)
def act_on_verdict(registry: ModelRegistry, experiment: Experiment) -> str:
    """Promote a challenger that won (recorded in the registry's lineage), retire one that
    lost; what was done. Acting twice changes nothing."""
    verdict = experiment.outcome.get("verdict", {})
    challenger = registry.get(experiment.model, experiment.challenger)
    detail = {"experiment": experiment.name, "verdict": verdict,
              "report": experiment.outcome.get("report", {})}
    if verdict.get("winner") == "challenger":
        if challenger.stage != "champion":
            registry.set_champion(challenger, detail)
        return f"{challenger.ref} promoted to champion"
    if verdict.get("winner") == "champion":
        if challenger.stage != "archived":
            registry.retire(challenger, detail)
        return f"{challenger.ref} retired"
    return f"experiment {experiment.name} has no winner: nothing done"


@task(name="tell-owner", cache_policy=NONE)
def tell_owner(settings: Settings, registry: ModelRegistry, experiment: Experiment,
               action: str) -> list[Delivery]:
    """An e-mail to the challenger's owner saying what the experiment decided."""
    owner = registry.get(experiment.model, experiment.challenger).owner
    verdict = experiment.outcome.get("verdict", {})
    text = (f"Experiment {experiment.name} ({experiment.model} v{experiment.champion} vs "
            f"v{experiment.challenger}) concluded: {verdict.get('message', '')}\n{action}.")
    mail = Mail((owner,), f"[tideline] experiment {experiment.name}: {action}", text,
                f"<p>{text}</p>")
    return send_mails(settings, [mail])
