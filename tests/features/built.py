"""A lake whose main holds the churn tables and their features at three as-of dates, for the
feature-store tests (built once per module: it takes a few seconds)."""
from __future__ import annotations

from datetime import date
from pathlib import Path

from tideline.demo.views import CHURN_VIEWS
from tideline.features.materialize import materialize_partition
from tideline.features.plan import plan_from_lake
from tideline.lake.local import LocalLake

from tests.features.conftest import churn_tables, write_clean

AS_OF = [date(2026, 8, 1), date(2026, 8, 15), date(2026, 9, 1)]


def build_features(lake: LocalLake, as_of: list[date], views=CHURN_VIEWS, partitions: int = 2
                   ) -> str:
    """Materialise `views` at `as_of` from main's clean tables and merge them into main."""
    ref = lake.resolve("main")
    plan = plan_from_lake(views, lake, ref)
    branch = f"build-{len(lake.log('main', 1000))}"
    lake.create_branch(branch, "main")
    for k in range(partitions):
        materialize_partition(lake, ref, branch, plan, as_of, k, partitions)
    lake.commit(branch, f"features as of {', '.join(map(str, as_of))}")
    return lake.merge(branch, "main", message=f"publish {branch}").id


def built_lake(path: Path, customers: int = 120) -> LocalLake:
    lake = LocalLake(path)
    write_clean(lake, churn_tables(customers=customers))
    build_features(lake, AS_OF)
    return lake


def doc_queries(kind: str) -> list[str]:
    """The SQL blocks of docs/feature_store.md that start with `-- <kind>`."""
    import re

    text = (Path(__file__).parents[2] / "docs" / "feature_store.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    return [b for b in blocks if b.startswith(f"-- {kind}\n")]


def copied_store(template: Path, into: Path, views=CHURN_VIEWS, online=None):  # noqa: ANN001, ANN201
    """A feature store on a private copy of a built lake (tests publish into it), with a fresh
    registry next to it."""
    import shutil

    from tideline.features.registry import Registry
    from tideline.features.store import FeatureStore

    shutil.copytree(template, into / "lake")
    return FeatureStore(LocalLake(into / "lake"), Registry(f"sqlite:///{into / 'registry.db'}"),
                        list(views), online)
