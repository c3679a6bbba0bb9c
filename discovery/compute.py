"""Candidate values for the labelled examples, one (candidate view, entity partition) per Ray
task: the task reads the examples and its partition's events from the lake at one commit,
computes the view with the batch engine for each example's as-of time (point-in-time correct
by construction) and writes the values next to the examples' row numbers on the discovery
branch. Only paths and counts come back to the driver."""
from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tideline.core.partitioning import hash_bucket
from tideline.features.engine import Spine, compute_views
from tideline.features.materialize import load_events
from tideline.features.plan import FeaturePlan
from tideline.lake.base import Lake

ROW = "_row"
"""The example's position in the examples table."""


def examples_path(run_id: str) -> str:
    return f"discovery/{run_id}/examples.parquet"


def write_examples(lake: Lake, branch: str, run_id: str, examples: pd.DataFrame, key: str
                   ) -> str:
    """The examples' keys (of the events' type, which the engine joins on) and as-of times, for
    the tasks to read (labels stay on the driver: no task ever sees the target)."""
    frame = pd.DataFrame({key: examples[key].to_numpy(),
                          "as_of": pd.to_datetime(examples["as_of"], utc=True).to_numpy()})
    path = examples_path(run_id)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    lake.put(branch, path, buffer.getvalue())
    return path


@dataclass(frozen=True)
class ComputedPart:
    view: str
    partition: int
    path: str
    rows: int
    seconds: float


def part_path(run_id: str, view: str, partition: int, partitions: int) -> str:
    return (f"discovery/{run_id}/candidates/{view}/"
            f"part-{partition:04d}-of-{partitions:04d}.parquet")


def compute_part(lake: Lake, ref: str, branch: str, run_id: str, plan: FeaturePlan, key: str,
                 partition: int, partitions: int) -> ComputedPart:
    """One view's candidates (the plan holds one view) for one partition's examples."""
    started = time.perf_counter()
    (view,) = plan.views
    with lake.reader(branch, examples_path(run_id)) as handle:
        examples = pq.read_table(handle)
    keys = examples.column(key).combine_chunks()
    rows = np.flatnonzero(hash_bucket(keys, partitions) == partition) if partitions > 1 \
        else np.arange(len(keys))
    events = load_events(lake, ref, plan, partition, partitions)
    spine = Spine.of(keys.take(pa.array(rows)).to_numpy(zero_copy_only=False),
                     examples.column("as_of").take(pa.array(rows)).to_pandas())
    frame = compute_views([view], events, spine, leading={ROW: rows})
    path = part_path(run_id, view.name, partition, partitions)
    with lake.writer(branch, path) as sink:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return ComputedPart(view=view.name, partition=partition, path=path, rows=len(rows),
                        seconds=round(time.perf_counter() - started, 3))


def read_values(lake: Lake, branch: str, parts: list[ComputedPart], rows: int) -> pd.DataFrame:
    """The candidates of the computed parts, one row per example in the examples' order."""
    frames = []
    for part in parts:
        with lake.reader(branch, part.path) as handle:
            frames.append(pq.read_table(handle).to_pandas())
    frame = pd.concat(frames, ignore_index=True).set_index(ROW).sort_index()
    return frame.reindex(pd.RangeIndex(rows))
