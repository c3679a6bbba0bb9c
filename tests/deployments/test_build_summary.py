"""`tideline features build`'s summary: how many source days came from daily tiles and from
raw events, and which features kept their source raw."""
from __future__ import annotations

from tideline.deployments.cli.common import console
from tideline.deployments.cli.features import print_features
from tideline.features.materialize import FeatureBuild, PartitionResult


def test_the_summary_counts_days_from_tiles_and_from_events() -> None:
    parts = tuple(PartitionResult(partition=k, entities=10, rows=10, paths=(), seconds=1.0,
                                  days_from_tiles=89, days_from_events=1 + 90,
                                  untiled=("visits.pages_30d: nunique needs the events",))
                  for k in range(2))
    build = FeatureBuild(run_id="r1", source_commit="c" * 64, as_of=("2026-04-01",),
                         versions={"payments": "v1", "visits": "v2"},
                         view_features={"payments": 3, "visits": 2}, partitions=parts,
                         manifest="features/_runs/r1.json")
    with console.capture() as captured:
        print_features(build)
    out = captured.get()
    assert "source days: 89 from daily tiles, 91 from raw events" in out
    assert "read raw: visits.pages_30d: nunique needs the events" in out
