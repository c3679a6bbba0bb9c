"""Tasks around batch scoring: who to score, their features from the store, the scores into
the lake and the analysts' table."""
from __future__ import annotations

from datetime import date

import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from tideline.core.errors import ModelError
from tideline.features.store import FeatureStore
from tideline.lake.publish import publish
from tideline.lake.tables import write_table
from tideline.models.registry import ModelRecord, ModelRegistry, load_model
from tideline.models.scoring import check_versions, score, scoring_population
from tideline.models.spec import ModelSpec


@task(name="champion", cache_policy=NONE)
def champion_for(registry: ModelRegistry, store: FeatureStore, spec: ModelSpec) -> ModelRecord:
    record = registry.champion(spec.name)
    if record is None:
        raise ModelError(f"model {spec.name!r} has no champion to score with; train one "
                         "(`tideline train`) or promote a version")
    check_versions(record, store.views)
    return record


@task(name="score-customers", cache_policy=NONE)
def score_customers(store: FeatureStore, record: ModelRecord, spec: ModelSpec,
                    as_of: date | None) -> tuple[date, pd.DataFrame]:
    """Every customer active before the day (the newest day every view has a table for) with
    the champion's probability, risk and reasons."""
    day, features = scoring_population(store, record, spec, as_of)
    return day, score(load_model(store.lake, record), features, spec.label.entity_key)


@task(name="publish-scores", retries=1, cache_policy=NONE)
def publish_scores(store: FeatureStore, registry: ModelRegistry, record: ModelRecord,
                   day: date, scores: pd.DataFrame, run_id: str, key: str) -> str:
    """The scores into the lake (through a run branch) and the analysts' `scores` table."""
    path = f"scores/{record.name}/as_of={day:%Y-%m-%d}/scores.parquet"
    high = int((scores["risk"] == "high").sum())
    with publish(store.lake, f"{run_id}-scores", message=f"{record.ref} scores as of {day}",
                 metadata={"stage": "scores", "model": record.ref, "path": path,
                           "as_of": f"{day}", "customers": str(len(scores)),
                           "high_risk": str(high)}) as run:
        write_table(store.lake, run.branch, path, scores.assign(
            as_of=pd.Timestamp(day), **({} if "model" in scores else {"model": record.ref})))
    registry.save_scores(record, day, scores, key)
    return path


@task(name="publish-score-artifacts")
def publish_score_artifacts(record: ModelRecord, day: date, scores: pd.DataFrame, key: str
                            ) -> None:
    counts = scores["risk"].value_counts()
    create_table_artifact(
        key="churn-risk", description=f"{record.ref}: customers by risk as of {day}",
        table=[{"risk": risk, "customers": int(counts.get(risk, 0)),
                "mean probability": round(float(scores.loc[scores["risk"] == risk,
                                                           "probability"].mean()), 4)
                if counts.get(risk, 0) else None} for risk in ("high", "medium", "low")])
    top = scores.nlargest(20, "probability")
    create_table_artifact(
        key="churn-riskiest", description=f"{record.ref}: the 20 riskiest customers on {day}",
        table=[{key: r[key], "probability": round(r["probability"], 4), "reasons": r["reasons"]}
               for _, r in top.iterrows()])
