"""Erasure of entities from the tables on a branch, and the erasure list that keeps them out of
later runs.

    erasure/keys.parquet                 column, digest, request: sha256 of each erased key
    erasure/requests/<request>.json      what a request removed, per table (never the keys)

`erase_rows` rewrites every Parquet object under `ERASED_PREFIXES` holding a row whose `column`
is one of the keys, without those rows (bucketed objects keep a valid bucket layout; objects
without such rows are left alone). Landing consults `erasure_list` so a later pull or backfill
drops the same keys before they are written.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tideline.core.errors import LakeError
from tideline.lake.base import Lake
from tideline.lake.buckets import METADATA_KEY, write_bucketed

log = logging.getLogger(__name__)

ERASED_PREFIXES = ("raw/", "clean/", "quarantine/", "features/", "training_sets/", "scores/")
"""Where rows of customers live on main; everything else (reports, models, quality stats) holds
summaries, and is listed by `erase_rows` as not rewritten when it is not Parquet."""
KEYS_PATH = "erasure/keys.parquet"
REQUESTS_PREFIX = "erasure/requests/"
SCAN_THREADS = 4
_KEYS_SCHEMA = pa.schema([("column", pa.string()), ("digest", pa.string()),
                          ("request", pa.string())])


def key_digest(column: str, key: str) -> str:
    """What the erasure list holds for one key of `column`: not the key itself."""
    return hashlib.sha256(f"{column}\x00{key}".encode()).hexdigest()


def key_text(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Keys as the text they are compared by: raw text and typed columns alike, trimmed."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    return pc.utf8_trim_whitespace(values.cast(pa.large_string()))


@dataclass(frozen=True)
class ErasureRequest:
    """One erasure as recorded on the lake: counts, never the keys."""

    request: str
    column: str
    keys: int
    reason: str
    at: str
    removed: dict[str, int] = field(default_factory=dict)
    """Table (the first two segments of an object's path) -> rows removed."""
    objects: int = 0
    """Objects rewritten."""
    skipped: tuple[str, ...] = ()
    """Objects under the erased prefixes that are not Parquet, so not searched (but for the
    runs' own records, `_runs/`, which hold counts and paths)."""

    @property
    def path(self) -> str:
        return f"{REQUESTS_PREFIX}{self.request}.json"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, text: bytes) -> ErasureRequest:
        body = json.loads(text)
        return cls(**{**body, "skipped": tuple(body.get("skipped", ()))})


def erasure_list(lake: Lake, ref: str) -> dict[str, frozenset[str]]:
    """The erased keys' digests on `ref`, by column (empty when nothing was ever erased)."""
    if not lake.exists(ref, KEYS_PATH):
        return {}
    with lake.reader(ref, KEYS_PATH) as source:
        table = pq.ParquetFile(source).read(columns=["column", "digest"])
    found: dict[str, set[str]] = {}
    for column, digest in zip(table.column("column").to_pylist(),
                              table.column("digest").to_pylist(), strict=True):
        found.setdefault(column, set()).add(digest)
    return {column: frozenset(digests) for column, digests in found.items()}


def erased_mask(table: pa.Table, erased: dict[str, frozenset[str]]) -> np.ndarray | None:
    """Which rows of `table` hold an erased key in any column the list names; None when none
    do. Each distinct value is hashed once."""
    mask = None
    for column in erased.keys() & set(table.column_names):
        encoded = pc.dictionary_encode(key_text(table.column(column)))
        hit = np.array([value is not None and key_digest(column, value) in erased[column]
                        for value in encoded.dictionary.to_pylist()], dtype=bool)
        if not hit.any():
            continue
        rows = hit[encoded.indices.fill_null(0).to_numpy()] & encoded.indices.is_valid(
            ).to_numpy(zero_copy_only=False)
        mask = rows if mask is None else mask | rows
    return mask if mask is not None and mask.any() else None


def drop_erased(table: pa.Table, erased: dict[str, frozenset[str]]) -> tuple[pa.Table, int]:
    """`table` without the rows holding an erased key, and how many were dropped."""
    if not erased:
        return table, 0
    mask = erased_mask(table, erased)
    if mask is None:
        return table, 0
    return table.filter(pa.array(~mask)), int(mask.sum())


def table_of(path: str) -> str:
    """The table an object belongs to: `clean/customers`, `raw/source=crm-customers`, ..."""
    return "/".join(path.split("/")[:2])


def _matches(lake: Lake, branch: str, path: str, column: str, keys: pa.Array) -> int:
    """How many rows of the object hold one of `keys` (0 when it has no `column`)."""
    with lake.reader(branch, path) as source:
        parquet = pq.ParquetFile(source)
        if column not in parquet.schema_arrow.names:
            return 0
        values = parquet.read(columns=[column]).column(column)
    return int(pc.sum(pc.is_in(key_text(values), value_set=keys)).as_py() or 0)


def _rewrite(lake: Lake, branch: str, path: str, column: str, keys: pa.Array) -> None:
    """Write the object again without the keys' rows, in its own layout: bucketed objects with
    their key and bucket count, others as one table in their row order."""
    with lake.reader(branch, path) as source:
        table = pq.ParquetFile(source).read()
    kept = table.filter(pc.invert(pc.is_in(key_text(table.column(column)), value_set=keys)))
    layout = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    if layout.get("key"):
        write_bucketed(lake, branch, path, kept, layout["key"], layout["count"])
        return
    with lake.writer(branch, path) as sink:
        pq.write_table(kept, sink)


def erase_rows(lake: Lake, branch: str, column: str, keys: Sequence[str], *, request: str,
               reason: str = "", prefixes: Iterable[str] = ERASED_PREFIXES) -> ErasureRequest:
    """Remove the rows whose `column` is one of `keys` from every table on `branch`, add the
    keys to the erasure list and record the request; returns the record. Commits nothing: the
    caller publishes the branch."""
    wanted = sorted({str(key).strip() for key in keys} - {""})
    if not wanted:
        raise LakeError("no keys to erase: give at least one non-empty entity key")
    values = pa.array(wanted, pa.large_string())
    objects = [info.path for prefix in prefixes for info in lake.list(branch, prefix)]
    parquet = [path for path in objects if path.endswith(".parquet")]
    with ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="erase") as pool:
        counts = list(pool.map(lambda path: _matches(lake, branch, path, column, values),
                               parquet))
    removed: dict[str, int] = {}
    rewritten = 0
    for path, count in zip(parquet, counts, strict=True):
        if count:
            _rewrite(lake, branch, path, column, values)
            removed[table_of(path)] = removed.get(table_of(path), 0) + count
            rewritten += 1
    _append_keys(lake, branch, column, wanted, request)
    record = ErasureRequest(
        request=request, column=column, keys=len(wanted), reason=reason,
        at=datetime.now(UTC).isoformat(timespec="seconds"), removed=dict(sorted(removed.items())),
        objects=rewritten, skipped=tuple(path for path in objects if not path.endswith(
            ".parquet") and "/_runs/" not in path))
    lake.put(branch, record.path, record.to_json())
    log.info("erasure %s: %d rows removed from %d objects of %d tables", request,
             sum(removed.values()), rewritten, len(removed))
    return record


def _append_keys(lake: Lake, branch: str, column: str, keys: Sequence[str], request: str
                 ) -> None:
    """Add the keys' digests to the erasure list (each digest once)."""
    old = _KEYS_SCHEMA.empty_table()
    if lake.exists(branch, KEYS_PATH):
        with lake.reader(branch, KEYS_PATH) as source:
            old = pq.ParquetFile(source).read().cast(_KEYS_SCHEMA)
    known = set(zip(old.column("column").to_pylist(), old.column("digest").to_pylist(),
                    strict=True))
    digests = [key_digest(column, key) for key in keys]
    new = [digest for digest in dict.fromkeys(digests) if (column, digest) not in known]
    added = pa.table({"column": [column] * len(new), "digest": new,
                      "request": [request] * len(new)}, schema=_KEYS_SCHEMA)
    with lake.writer(branch, KEYS_PATH) as sink:
        pq.write_table(pa.concat_tables([old, added]), sink)


def read_request(lake: Lake, ref: str, request: str) -> ErasureRequest:
    return ErasureRequest.from_json(lake.get(ref, f"{REQUESTS_PREFIX}{request}.json"))
