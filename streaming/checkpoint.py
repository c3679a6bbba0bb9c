"""Stream processor checkpoints in the lake: the state (window buffer and running aggregates)
and the stream sequence it covers, committed together on the processor's own branch
`stream-<name>`, so a restart resumes from the last commit instead of replaying all history.

A checkpoint is one commit: a crash while writing one leaves the previous commit as the
checkpoint (uncommitted objects are reset before the next write). Main is never touched.
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from tideline.core.errors import RefNotFound
from tideline.lake.base import MAIN, Lake, check_branch

BUFFER, RUNNING, META = "stream/buffer.parquet", "stream/running.parquet", "stream/meta.json"


@dataclass(frozen=True)
class CheckpointMeta:
    sequence: int
    """The last stream sequence applied to the state."""
    clock: int
    """The state's clock (ns)."""
    versions: dict[str, str]
    """View name -> version the state was built for."""
    source_commit: str
    """The lake commit the state was first built from."""


def branch_name(processor: str) -> str:
    return check_branch(f"stream-{processor}")


def save_checkpoint(lake: Lake, processor: str, buffer: pa.Table, running: pa.Table,
                    meta: CheckpointMeta) -> str:
    """Commit the state; returns the commit id."""
    branch = branch_name(processor)
    if branch not in lake.branches():
        lake.create_branch(branch, MAIN)
    lake.reset(branch)  # objects of a checkpoint cut off by a crash
    for path, table in ((BUFFER, buffer), (RUNNING, running)):
        sink = pa.BufferOutputStream()  # an Arrow sink: with a Python one, the writer takes
        pq.write_table(table, sink)     # the GIL for every page, stalling the stream's thread
        lake.put(branch, path, sink.getvalue().to_pybytes())
    lake.put(branch, META, json.dumps(asdict(meta), sort_keys=True).encode())
    return lake.commit(branch, f"stream {processor}: checkpoint at sequence {meta.sequence}",
                       metadata={"sequence": str(meta.sequence)}).id


def load_checkpoint(lake: Lake, processor: str
                    ) -> tuple[pa.Table, pa.Table, CheckpointMeta] | None:
    """The last committed checkpoint, or None when there is none."""
    try:
        commit = lake.resolve(branch_name(processor))
    except RefNotFound:
        return None
    if not lake.exists(commit, META):
        return None
    meta = CheckpointMeta(**json.loads(lake.get(commit, META)))
    return (pq.read_table(io.BytesIO(lake.get(commit, BUFFER))),
            pq.read_table(io.BytesIO(lake.get(commit, RUNNING))), meta)


def drop_checkpoints(lake: Lake, processor: str) -> None:
    """Forget a processor's checkpoints (its next start builds the state from main)."""
    if branch_name(processor) in lake.branches():
        lake.delete_branch(branch_name(processor))
