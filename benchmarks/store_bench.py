"""Feature store: point-in-time training sets and online lookups (issue 5, "Performance").

    python benchmarks/store_bench.py [--customers 500000] [--entity-rows 1000000]
        [--feast-rows 1000000] [--feast-python /tmp/feast-venv/bin/python] [--repeat 3]
        [--smoke] [--online-only]

Data: the demo lake of `feature_bench` (cached under the work dir), its 57 churn features
materialised by `materialize_partition` at four weekly as-of dates (2026-09-10 .. 10-01) on a
branch `store-bench` (cached too). Entity rows: a row number (the references sort their output
by it), customer ids drawn from the population (2 % unknown ids), timestamps uniform over
2026-09-08 .. 10-08 (1 % exactly on an as-of midnight, some before the first table: no values),
and a label. The same feature tables are flattened, once and untimed, into one long Parquet
file (customer_id, as_of, 57 features) for the references.

Training set, each case in a fresh interpreter, timed around the retrieval call only, peak RSS
being the process's high-water mark (`VmHWM`) at the end of the call (the peak of its process
tree, sampled every 0.2 s over the whole case, is kept too; the machine may be shared: each
run's time and load average are kept):
- tideline: `FeatureStore.get_training_set(..., save=False)`, and with `save=True` (written to
  the lake, tagged and recorded in the registry) under a fresh name each run;
- DuckDB: the entity rows `ASOF LEFT JOIN` the long table on customer_id and
  `event_timestamp >= as_of`, back in input order, fetched as pandas;
- Feast 0.67 `get_historical_features(...).to_df()` with the local file (Dask) offline store:
  a `FileSource` over the long table (event timestamp = as_of), one `FeatureView` with a 30-day
  TTL. Feast is not a project dependency: its interpreter (a separate venv) runs the source of
  `feast_training_set` only), with its file (Dask) offline store and with its DuckDB one, on
  the same entity rows as the others (no extrapolation); skipped, and said so, when
  `--feast-python` does not exist.
Every case runs `--repeat` times, in turn; the median and the minimum are reported for each.
Each reference's rows are compared with tideline's (`harness.agreement`, by row number: values
per feature to rtol 1e-6, rows missing on either side); the run exits 1 on a disagreement.

Online: per backend (SQLite file, Redis db 12 of the local server, flushed first), in a fresh
interpreter: `materialize_online` as of 2026-09-24 into an empty store (full), then as of 10-01
(incremental: changed entities only); latency of `get_online_features` for 1 and 100 random
known entities, all 57 features and 5 of them; throughput of 8 client threads, each with its own
`FeatureStore` and online client, asking for 100 entities × 57 features; and online values
compared with `get_training_set` just after 10-01 for a sample.

Prints tables and writes benchmarks/results/store_bench.json (smoke: benchmarks/out/).
`--smoke` runs the whole thing on a small lake in under a minute, the cases in this interpreter
(so its peak RSS is cumulative);
`--online-only` skips the training sets.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis
from feature_bench import WEEKLY, PreparedLake, prepare
from harness import (
    Child,
    Timer,
    agreement,
    agreement_text,
    dispatch,
    peak_rss,
    results_path,
    spread,
    verdict,
    write_results,
)
from rich.console import Console
from rich.table import Table
from tideline.demo.generator import DemoSpec
from tideline.demo.views import CHURN_VIEWS
from tideline.features.materialize import as_of_time, materialize_partition
from tideline.features.online.base import OnlineStore
from tideline.features.online.redis import RedisOnlineStore
from tideline.features.online.sqlite import SQLiteOnlineStore
from tideline.features.plan import plan_from_lake
from tideline.features.registry import Registry
from tideline.features.retrieval import read_snapshot
from tideline.features.store import FeatureStore
from tideline.lake.local import LocalLake

FEATURES = [name for view in CHURN_VIEWS for name in view.feature_names]
REQUEST = [f"{view.name}:*" for view in CHURN_VIEWS]
"""All 57 features, asked for by view."""
SUBSET = ["spend_30d", "txn_count_7d", "logins_7d", "tickets_90d", "plan"]
KEY, TIMESTAMP, AS_OF = "customer_id", "event_timestamp", "as_of"
ENTITY_START = datetime(2026, 9, 8, tzinfo=UTC)
ENTITY_DAYS = 30
UNKNOWN_SHARE, EXACT_SHARE = 0.02, 0.01
FEAST_TTL_DAYS = 30
"""Longer than any gap between a row and the newest table before it (tideline's views have no
TTL), so Feast's TTL never hides a value that tideline returns."""
BRANCH = "store-bench"
DATA_VERSION = 1
"""Bump when the feature build, the entity rows or the long table change."""
REDIS_URL = "redis://127.0.0.1:6379/12"
THREADS = 8
P99_TARGET_MS = 5.0
FEAST_TARGET, DUCKDB_TARGET = 5.0, 1.5
CASES = {"tideline": "tideline save=False", "duckdb": "DuckDB ASOF JOIN",
         "tideline-save": "tideline save=True", "feast": "Feast 0.67 file store",
         "feast-duckdb": "Feast 0.67 DuckDB offline store"}
"""Training-set cases by id, with their names in the table; each runs `Scale.repeat` times,
in turn, so a burst of load elsewhere hits all alike."""
FEAST_STORES = {"feast": "file", "feast-duckdb": "duckdb"}


@dataclass(frozen=True)
class Scale:
    customers: int
    entity_rows: int
    latency_calls: int
    """Timed calls per latency case (after a tenth as many warm-up calls)."""
    throughput_seconds: float
    repeat: int = 1
    """Runs of each `REPEATED` case."""
    partitions: int = 2


FULL = Scale(customers=500_000, entity_rows=1_000_000, latency_calls=2_000,
             throughput_seconds=10.0, repeat=3)
SMOKE = Scale(customers=20_000, entity_rows=20_000, latency_calls=30, throughput_seconds=1.0)


@dataclass(frozen=True)
class BenchData:
    """The feature tables on the lake's `store-bench` branch and the files built from them."""

    root: str
    commit: str
    """The commit on `store-bench` holding the feature tables."""
    customers: int
    entity_rows: int
    entities: str
    """Parquet: row, customer_id, event_timestamp, churned."""
    long_table: str
    """Parquet: customer_id, as_of, the 57 features; one row per customer and as-of date."""
    long_rows: int
    build_seconds: float


# -- data ----------------------------------------------------------------------------------


def build_features(lake: PreparedLake, dates: tuple[date, ...], partitions: int) -> str:
    """The churn views at `dates` for every partition (one process each) on a fresh branch
    from the prepared commit; returns the branch's new commit."""
    local = LocalLake(lake.root)
    if BRANCH in local.branches():
        local.delete_branch(BRANCH)
    local.create_branch(BRANCH, lake.commit)
    plan = plan_from_lake(CHURN_VIEWS, local, lake.commit)
    with ProcessPoolExecutor(partitions) as pool:
        list(pool.map(materialize_partition, *zip(*[
            (local, lake.commit, BRANCH, plan, dates, k, partitions)
            for k in range(partitions)], strict=True)))
    return local.commit(BRANCH, f"store bench: churn features as of {dates[0]}..{dates[-1]}").id


def long_table(lake: LocalLake, commit: str, dates: tuple[date, ...]) -> pa.Table:
    """Every view's table at every date, joined on the customer, stacked with its as-of time."""
    stacked = []
    for day in dates:
        joined = functools.reduce(
            lambda left, right: left.join(right, KEY, join_type="full outer"),
            [read_snapshot(lake, commit, view, day, view.feature_names) for view in CHURN_VIEWS])
        stamp = pa.array(np.full(len(joined), as_of_time(day).value), pa.timestamp("ns", "UTC"))
        stacked.append(joined.select([KEY, *FEATURES]).add_column(1, AS_OF, stamp))
    return pa.concat_tables(stacked)


def entity_rows(population: np.ndarray, rows: int, dates: tuple[date, ...],
                seed: int) -> pd.DataFrame:
    """Known and unknown customers at random times over the weeks of the tables."""
    rng = np.random.default_rng(seed)
    ids = population[rng.integers(0, len(population), rows)].astype(object)
    unknown = rng.random(rows) < UNKNOWN_SHARE
    ids[unknown] = [f"X{k:07d}" for k in range(int(unknown.sum()))]
    start = pd.Timestamp(ENTITY_START).as_unit("ns").value
    times = start + rng.integers(0, ENTITY_DAYS * 86_400, rows) * 10**9
    exact = rng.random(rows) < EXACT_SHARE
    midnights = np.array([as_of_time(day).value for day in dates])
    times[exact] = midnights[rng.integers(0, len(dates), int(exact.sum()))]
    return pd.DataFrame({"row": np.arange(rows), KEY: ids,
                         TIMESTAMP: pd.to_datetime(times, utc=True).as_unit("ns"),
                         "churned": rng.integers(0, 2, rows)})


def ready_file(work: Path, scale: Scale) -> Path:
    """Where the data of `scale` is described once built; named after the view versions too,
    since the tables' paths hold them."""
    versions = hashlib.sha256(" ".join(v.version for v in CHURN_VIEWS).encode()).hexdigest()
    return work / f"store-{scale.customers}-{scale.entity_rows}-v{DATA_VERSION}-{versions[:8]}.json"


def cached_data(work: Path, scale: Scale) -> BenchData | None:
    ready = ready_file(work, scale)
    if not ready.exists():
        return None
    data = BenchData(**json.loads(ready.read_text()))
    lake = LocalLake(data.root)
    return data if lake.branches().get(BRANCH) == data.commit else None


def bench_data(work: Path, scale: Scale, seed: int) -> BenchData:
    """The cached features and files for `scale`, built on first use."""
    cached = cached_data(work, scale)
    if cached is not None:
        return cached
    lake = prepare(scale.customers, work, seed)
    with Timer() as build:
        commit = build_features(lake, WEEKLY, scale.partitions)
    local = LocalLake(lake.root)
    table = long_table(local, commit, WEEKLY)
    folder = work / "data"
    folder.mkdir(exist_ok=True)
    long_path = folder / f"features-long-{scale.customers}.parquet"
    pq.write_table(table, long_path)
    population = pc.unique(table.column(KEY)).to_numpy(zero_copy_only=False)
    entities = entity_rows(np.sort(population), scale.entity_rows, WEEKLY, seed)
    entity_path = folder / f"entities-{scale.customers}-{scale.entity_rows}.parquet"
    entities.to_parquet(entity_path, index=False)
    data = BenchData(root=lake.root, commit=commit, customers=scale.customers,
                     entity_rows=scale.entity_rows, entities=str(entity_path),
                     long_table=str(long_path), long_rows=len(table),
                     build_seconds=build.seconds)
    ready_file(work, scale).write_text(json.dumps(asdict(data)))
    return data


# -- training sets, one per fresh interpreter -------------------------------------------------


def open_store(data: BenchData, work: Path, online: OnlineStore | None = None) -> FeatureStore:
    return FeatureStore(LocalLake(data.root), Registry(f"sqlite:///{work / 'registry.db'}"),
                        CHURN_VIEWS, online=online)


def tideline_training_set(data: BenchData, work: Path, save: bool, output: Path) -> dict:
    store = open_store(data, work)
    entities = pd.read_parquet(data.entities)
    name = f"bench-{datetime.now(UTC):%Y%m%d%H%M%S}" if save else None
    with Timer() as timer:
        result = store.get_training_set(entities, REQUEST, ref=data.commit, name=name, save=save)
    peak = peak_rss()
    if not save:
        result.frame.to_parquet(output, index=False)
    return {"seconds": timer.seconds, "peak_rss_bytes": peak, "entity_rows": len(entities),
            "rows": len(result.frame),
            "lake_commit": result.lake_commit or None}


DUCKDB_ASOF = f"""
-- pandas' timestamps arrive as TIMESTAMPTZ (µs), the Parquet ones as TIMESTAMPTZ_NS
SELECT e.*, f.* EXCLUDE ({KEY}, {AS_OF})
FROM entities e ASOF LEFT JOIN (
  SELECT * REPLACE ({AS_OF}::TIMESTAMPTZ AS {AS_OF}) FROM read_parquet(?)) f
  ON e.{KEY} = f.{KEY} AND e.{TIMESTAMP} >= f.{AS_OF}
ORDER BY e.row
"""


def duckdb_training_set(data: BenchData, output: Path) -> dict:
    entities = pd.read_parquet(data.entities)
    connection = duckdb.connect()
    connection.register("entities", entities)
    with Timer() as timer:
        frame = connection.execute(DUCKDB_ASOF, [data.long_table]).df()
    peak = peak_rss()
    frame.to_parquet(output, index=False)
    threads = connection.execute("SELECT current_setting('threads')").fetchone()
    return {"seconds": timer.seconds, "peak_rss_bytes": peak, "entity_rows": len(entities),
            "rows": len(frame), "threads": int(threads[0]) if threads else None}


def feast_training_set(spec: dict[str, Any]) -> dict[str, Any]:
    """Feast's point-in-time join over the long table, in Feast's own interpreter: this
    function's source (and `peak_rss`'s) is all it runs, so it imports what it needs
    itself."""
    import time
    from datetime import timedelta
    from pathlib import Path

    import pandas as pd
    import pyarrow.parquet as pq
    from feast import (
        Entity,
        FeatureStore,
        FeatureView,
        Field,
        FileSource,
        RepoConfig,
        ValueType,
        types,
    )

    kinds = {"double": types.Float64, "float": types.Float32, "int64": types.Int64,
             "int32": types.Int32, "string": types.String, "large_string": types.String,
             "bool": types.Bool}
    repo = Path(spec["repo"])
    repo.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    store = FeatureStore(config=RepoConfig(
        project="tideline_bench", provider="local", repo_path=repo,
        registry=str(repo / "registry.db"), offline_store={"type": spec["offline_store"]},
        online_store={"type": "sqlite", "path": str(repo / "online.db")},
        entity_key_serialization_version=3))
    customer = Entity(name="customer", join_keys=[spec["key"]], value_type=ValueType.STRING)
    schema = pq.read_schema(spec["long_table"])
    view = FeatureView(
        name="churn", entities=[customer], ttl=timedelta(days=spec["ttl_days"]),
        schema=[Field(name=name, dtype=kinds[str(schema.field(name).type)])
                for name in spec["features"]],
        source=FileSource(path=spec["long_table"], timestamp_field=spec["as_of"]))
    store.apply([customer, view])
    entities = pd.read_parquet(spec["entities"]).head(spec["rows"])
    setup = time.perf_counter() - started
    started = time.perf_counter()
    frame = store.get_historical_features(
        entity_df=entities, features=[f"churn:{name}" for name in spec["features"]]).to_df()
    seconds = time.perf_counter() - started
    peak = peak_rss()
    frame.sort_values("row").to_parquet(spec["output"], index=False)
    return {"seconds": seconds, "setup_seconds": setup, "peak_rss_bytes": peak,
            "entity_rows": len(entities), "rows": len(frame)}


def run_feast(data: BenchData, work: Path, rows: int, python: str, output: Path,
              offline_store: str) -> dict:
    """`feast_training_set` in the Feast venv's interpreter; its JSON result, with the peak RSS
    of its process tree."""
    spec = {"repo": str(work / f"feast-repo-{offline_store}"), "long_table": data.long_table,
            "offline_store": offline_store,
            "entities": data.entities, "rows": rows, "key": KEY, "as_of": AS_OF,
            "features": FEATURES, "ttl_days": FEAST_TTL_DAYS, "output": str(output)}
    source = (f"from __future__ import annotations\nfrom typing import Any\n"
              f"{inspect.getsource(peak_rss)}\n"
              f"{inspect.getsource(feast_training_set)}\n"
              f"import json, sys\nprint(json.dumps(feast_training_set(json.loads(sys.argv[1]))))")
    return Child([python, "-c", source, json.dumps(spec)],
                 work / "logs" / f"feast-{offline_store}.log", name="Feast").measured()


# -- online ----------------------------------------------------------------------------------


def empty_online_store(backend: str, work: Path) -> OnlineStore:
    if backend == "redis":
        redis.Redis.from_url(REDIS_URL).flushdb(asynchronous=True)  # 2M keys take a while
        return RedisOnlineStore(REDIS_URL)
    path = work / "online.db"
    for leftover in (path, path.with_name("online.db-wal"), path.with_name("online.db-shm")):
        leftover.unlink(missing_ok=True)
    return SQLiteOnlineStore(path)


def online_store(backend: str, work: Path) -> OnlineStore:
    return RedisOnlineStore(REDIS_URL) if backend == "redis" else SQLiteOnlineStore(
        work / "online.db")


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "calls": len(ms)}


def timed_calls(call: Callable[[], object], calls: int) -> list[float]:
    for _ in range(max(1, calls // 10)):
        call()
    spent = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        spent.append(time.perf_counter() - started)
    return spent


def throughput(data: BenchData, work: Path, backend: str, keys: np.ndarray,
               seconds: float) -> dict:
    """THREADS clients, each with its own store and online client, asking for 100 random
    entities × all features for `seconds`."""
    stores = [open_store(data, work, online_store(backend, work)) for _ in range(THREADS)]
    latencies: list[list[float]] = [[] for _ in range(THREADS)]
    go = threading.Barrier(THREADS + 1)
    stop = threading.Event()

    def client(k: int) -> None:
        rng = np.random.default_rng(100 + k)
        go.wait()
        while not stop.is_set():
            ids = keys[rng.integers(0, len(keys), 100)]
            started = time.perf_counter()
            stores[k].get_online_features(ids, REQUEST)
            latencies[k].append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    go.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = [s for mine in latencies for s in mine]
    for store in stores:
        store.online.close()
    return {"threads": THREADS, "seconds": elapsed, "requests_per_second": len(every) / elapsed,
            "entities_per_second": 100 * len(every) / elapsed, **percentiles(every)}


def online_agreement(store: FeatureStore, data: BenchData, keys: np.ndarray) -> dict:
    """Online values against a training set read just after the newest as-of date."""
    ids = keys[:200]
    online = store.get_online_features(ids, REQUEST).frame
    moment = as_of_time(WEEKLY[-1]) + pd.Timedelta(hours=1)
    offline = store.get_training_set(pd.DataFrame({KEY: ids, TIMESTAMP: moment}), REQUEST,
                                     ref=data.commit, save=False).frame
    return agreement(f"online {store.online.__class__.__name__}", offline.set_index(KEY),
                     online, KEY, FEATURES)


def online_case(data: BenchData, work: Path, backend: str, scale: Scale) -> dict:
    store = open_store(data, work, empty_online_store(backend, work))
    materialised = {}
    for mode, day in (("full", WEEKLY[-2]), ("incremental", WEEKLY[-1])):
        with Timer() as timer:
            writes = store.materialize_online(ref=data.commit, as_of=day)
        materialised[mode] = {"seconds": timer.seconds,
                              "written": sum(w.written for w in writes),
                              "deleted": sum(w.deleted for w in writes),
                              "modes": sorted({w.mode for w in writes})}
    keys = read_snapshot(store.lake, data.commit, CHURN_VIEWS[0], WEEKLY[-1], []).column(
        KEY).to_numpy(zero_copy_only=False)
    rng = np.random.default_rng(7)
    latency = {}
    for entities in (1, 100):
        for features in (REQUEST, SUBSET):
            batches = iter([keys[rng.integers(0, len(keys), entities)]
                            for _ in range(scale.latency_calls * 2)])
            spent = timed_calls(lambda f=features, b=batches: store.get_online_features(
                next(b), f), scale.latency_calls)
            width = len(FEATURES) if features is REQUEST else len(features)
            latency[f"{entities}x{width}"] = percentiles(spent)
    agree = online_agreement(store, data, rng.permutation(keys))
    concurrent = throughput(data, work, backend, keys, scale.throughput_seconds)
    return {"backend": backend, "materialize": materialised, "latency": latency,
            "throughput": concurrent, "agreement": agree, "peak_rss_bytes": peak_rss()}


# -- the run ---------------------------------------------------------------------------------


def measure(body: dict, work: Path, isolated: bool) -> dict:
    """One case in a fresh interpreter, with the peak RSS of its process tree; or, for a smoke
    run (interpreters take seconds to start), in this one, where its peak RSS is this
    process's so far."""
    if not isolated:
        return json.loads(json.dumps(run_case(body), default=str))
    return Child.case(__file__, body, work / "logs" / f"{body['case']}.log").measured()


def run_case(body: dict) -> dict:
    global REDIS_URL  # noqa: PLW0603 - the run's --redis-url, set once per case process
    REDIS_URL = body.get("redis_url", REDIS_URL)
    work = Path(body["work"])
    if body["case"] == "data":
        return asdict(bench_data(work, Scale(**body["scale"]), body["seed"]))
    data = BenchData(**body["data"])
    output = work / "out" / f"{body['case']}.parquet"
    if body["case"] == "tideline":
        return tideline_training_set(data, work, save=False, output=output)
    if body["case"] == "tideline-save":
        return tideline_training_set(data, work, save=True, output=output)
    if body["case"] == "duckdb":
        return duckdb_training_set(data, output)
    return online_case(data, work, body["case"], Scale(**body["scale"]))


def summary_of(name: str, results: list[dict]) -> dict:
    """A case's runs: the median run's facts, with every run's time and load, and the median
    and minimum of their times (`seconds` is the median)."""
    timing = spread([result["seconds"] for result in results])
    middle = min(results, key=lambda result: abs(result["seconds"] - timing["median"]))
    return {"name": name, **middle, "seconds": timing["median"], "timing": timing,
            "runs_load_average": [result["load_average_before"] for result in results]}


def training_agreement(work: Path, training: dict[str, dict]) -> dict[str, dict]:
    """Each reference's rows against tideline's, keyed by the entity row number: a row missing
    from either side counts (how many of the missing ones tideline gives no values is said)."""
    expected = pd.read_parquet(work / "out" / "tideline.parquet").set_index("row")
    checks = {}
    for name in training:
        if name in ("tideline", "tideline-save"):
            continue
        actual = pd.read_parquet(work / "out" / f"{name}.parquet").drop(columns=KEY)
        # Feast's file store leaves out an entity row with no values at all, where tideline
        # returns it with nulls: the same answer, put back as nulls (and counted); a row
        # left out that has a value in tideline's still counts as missing
        missing = expected[~expected.index.isin(actual["row"])]
        empty = missing[missing[FEATURES].isna().all(axis=1)]
        actual = pd.concat([actual, empty[FEATURES].reset_index()], ignore_index=True)
        checks[name] = agreement(name, expected, actual, "row", FEATURES)
        checks[name]["rows_without_values_left_out"] = len(empty)
        # Feast's file store also returns one row for entity rows repeating a customer and
        # time: still missing rows (a user's training set is shorter), said apart
        kept = expected[expected.index.isin(actual["row"])]
        lost = missing.drop(index=empty.index)
        checks[name]["missing_rows_repeating_key_and_time"] = int(pd.MultiIndex.from_frame(
            lost[[KEY, TIMESTAMP]]).isin(pd.MultiIndex.from_frame(kept[[KEY, TIMESTAMP]])).sum())
    return checks


def report_training(console: Console, data: BenchData, training: dict[str, dict],
                    checks: dict[str, dict]) -> None:
    table = Table(title=f"point-in-time training set: {data.entity_rows:,} entity rows × "
                        f"{len(FEATURES)} features, {data.customers:,} customers × "
                        f"{len(WEEKLY)} as-of dates; every case run as often, in turn")
    for column in ("case", "rows", "median s", "min s", "runs (s)", "rows/s (median)",
                   "× tideline (median)", "peak RSS (GiB)", "load avg before",
                   "agreement with tideline"):
        table.add_column(column, justify="left" if column in ("case", "agreement with tideline")
                         else "right")
    base = training["tideline"]["seconds"]
    for case, result in training.items():
        check = checks.get(case)
        table.add_row(result["name"], f"{result['entity_rows']:,}",
                      f"{result['timing']['median']:.2f}", f"{result['timing']['min']:.2f}",
                      " / ".join(f"{s:.1f}" for s in result["timing"]["seconds"]),
                      f"{result['entity_rows'] / result['seconds']:,.0f}",
                      f"{result['seconds'] / base:.2f}",
                      f"{result['peak_rss_bytes'] / 2**30:.2f}",
                      " / ".join(f"{x:.1f}" for x in result["runs_load_average"]),
                      "—" if check is None else agreement_text(check) + (
                          f" ({check['rows_without_values_left_out']:,} rows without values "
                          "left out, counted as nulls)"
                          if check.get("rows_without_values_left_out") else ""))
    console.print(table)


def report(console: Console, data: BenchData, training: dict[str, dict],
           checks: dict[str, dict], online: dict[str, dict], summary: dict) -> None:
    if training:
        report_training(console, data, training, checks)
    table = Table(title="online store: get_online_features latency (ms) and materialisation")
    for column in ("backend", "request", "p50", "p99", "mean", "calls"):
        table.add_column(column, justify="left" if column in ("backend", "request") else "right")
    for backend, result in online.items():
        for request, stats in result["latency"].items():
            table.add_row(backend, f"{request} (entities × features)", f"{stats['p50_ms']:.2f}",
                          f"{stats['p99_ms']:.2f}", f"{stats['mean_ms']:.2f}",
                          f"{stats['calls']:,}")
        t = result["throughput"]
        table.add_row(backend, f"{THREADS} threads, 100×{len(FEATURES)}: "
                               f"{t['requests_per_second']:,.0f} req/s, "
                               f"{t['entities_per_second']:,.0f} entities/s",
                      f"{t['p50_ms']:.2f}", f"{t['p99_ms']:.2f}", f"{t['mean_ms']:.2f}",
                      f"{t['calls']:,}")
        for mode, m in result["materialize"].items():
            table.add_row(backend, f"materialise {mode}: {m['written']:,} entity rows of "
                                   f"{len(CHURN_VIEWS)} views written, {m['deleted']:,} deleted",
                          f"{m['seconds']:.1f} s", "", "", "")
        table.add_row(backend, f"online vs offline: {agreement_text(result['agreement'])}",
                      "", "", "", "")
        table.add_row(backend, f"load average before: {result['load_average_before']:.1f}",
                      "", "", "", "", end_section=True)
    console.print(table)
    for line in summary["targets"]:
        console.print(line)


def summarise(scale: Scale, training: dict[str, dict], online: dict[str, dict]) -> dict:
    verdict_text = {True: "met", False: "NOT met"}
    redis_p99 = online["redis"]["latency"][f"100x{len(FEATURES)}"]["p99_ms"]
    summary: dict[str, Any] = {"redis_100_p99_ms": redis_p99, "targets": []}
    if training:
        ours = training["tideline"]["timing"]
        duck = training["duckdb"]["timing"]
        summary.update(tideline_over_duckdb=ours["median"] / duck["median"],
                       tideline_over_duckdb_min=ours["min"] / duck["min"],
                       entity_rows=scale.entity_rows)
        summary["targets"].append(
            f"tideline / DuckDB ASOF JOIN, medians: {summary['tideline_over_duckdb']:.2f}× "
            f"(minimums {summary['tideline_over_duckdb_min']:.2f}×; target ≤ "
            f"{DUCKDB_TARGET:g}×: "
            f"{verdict_text[summary['tideline_over_duckdb'] <= DUCKDB_TARGET]})")
        for case in FEAST_STORES:
            if case not in training:
                continue
            feast = training[case]["timing"]
            ratio = feast["median"] / ours["median"]
            summary[f"{case.replace('-', '_')}_over_tideline"] = ratio
            summary[f"{case.replace('-', '_')}_over_tideline_min"] = feast["min"] / ours["min"]
            summary["targets"].append(
                f"{CASES[case]} / tideline at {scale.entity_rows:,} rows, medians: {ratio:.1f}× "
                f"(minimums {feast['min'] / ours['min']:.1f}×; target ≥ {FEAST_TARGET:g}×: "
                f"{verdict_text[ratio >= FEAST_TARGET]})")
    summary["targets"].append(
        f"Redis p99 for 100 entities × {len(FEATURES)} features: {redis_p99:.2f} ms (target < "
        f"{P99_TARGET_MS:g} ms: {verdict_text[redis_p99 < P99_TARGET_MS]})")
    return summary


def run_training(console: Console, data: BenchData, body: dict, scale: Scale,
                 args: argparse.Namespace) -> tuple[dict[str, dict], dict[str, dict]]:
    """Every training-set case `scale.repeat` times, in turn, at the same entity rows; each
    case's median and minimum, and the references' agreement with tideline's rows."""
    work = Path(body["work"])
    feast = Path(args.feast_python).exists()
    if not feast:
        console.print(f"Feast: no interpreter at {args.feast_python} (a venv with "
                      "feast[duckdb]==0.67.0): its cases are skipped")
    cases = [case for case in CASES if feast or case not in FEAST_STORES]
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    for _ in range(scale.repeat):
        for case in cases:
            load = os.getloadavg()[0]  # anything else running skews the timing: say so
            with console.status(CASES[case]):
                if case in FEAST_STORES:
                    result = run_feast(data, work, scale.entity_rows, args.feast_python,
                                       work / "out" / f"{case}.parquet", FEAST_STORES[case])
                else:
                    result = measure({**body, "case": case}, work, isolated=not args.smoke)
            runs[case].append({**result, "load_average_before": load})
            console.log(f"{CASES[case]}: {result['seconds']:.2f} s for {result['rows']:,} rows "
                        f"(load average {load:.1f})")
    training = {case: summary_of(CASES[case], results) for case, results in runs.items()}
    with console.status("comparing training sets"):
        return training, training_agreement(work, training)


def run_bench(args: argparse.Namespace) -> int:
    console = Console(width=None if sys.stdout.isatty() else 160)
    scale = SMOKE if args.smoke else Scale(
        customers=args.customers, entity_rows=args.entity_rows,
        latency_calls=FULL.latency_calls, throughput_seconds=FULL.throughput_seconds,
        repeat=args.repeat)
    work = Path(args.work_dir)
    for folder in ("logs", "out"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    data = cached_data(work, scale)
    if data is None:
        with console.status(f"lake and features for {scale.customers:,} customers (cached "
                            "for later runs)"):
            data = BenchData(**Child.case(__file__, {"case": "data", "work": str(work),
                                                     "scale": asdict(scale), "seed": args.seed},
                                          work / "logs" / "data.log").result())
    console.log(f"data ready: {data.long_rows:,} feature rows, built in "
                f"{data.build_seconds:.0f} s (when not cached)")
    body = {"data": asdict(data), "work": str(work), "scale": asdict(scale),
            "redis_url": args.redis_url}
    training, checks = ({}, {}) if args.online_only else run_training(
        console, data, body, scale, args)
    online = {}
    for backend in ("sqlite", "redis"):
        load = os.getloadavg()[0]
        with console.status(f"online store: {backend}"):
            online[backend] = measure({**body, "case": backend}, work,
                                      isolated=not args.smoke)
        online[backend]["load_average_before"] = load
        console.log(f"online {backend}: done")
    summary = summarise(scale, training, online)
    report(console, data, training, checks, online, summary)
    checks = {**checks, **{f"online {backend}": result["agreement"]
                           for backend, result in online.items()}}
    write_results(results_path("store_bench", args.smoke), {
        "scale": asdict(scale), "smoke": args.smoke, "online_only": args.online_only,
        "data": asdict(data), "cores": os.cpu_count(),
        "timing": "training sets: each case in a fresh interpreter, timed around the "
                  "retrieval call, every case run `repeat` times in turn; seconds is the median",
        "weekly": [day.isoformat() for day in WEEKLY], "features": len(FEATURES),
        "subset": SUBSET, "training": training, "agreement": checks, "online": online,
        "summary": summary})
    return verdict(checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=FULL.customers)
    parser.add_argument("--entity-rows", type=int, default=FULL.entity_rows)
    parser.add_argument("--feast-python", default="/tmp/feast-venv/bin/python",
                        help="an interpreter with feast[duckdb]==0.67.0 installed (a venv of "
                             "its own: python3 -m venv DIR; DIR/bin/pip install "
                             "'feast[duckdb]==0.67.0')")
    parser.add_argument("--repeat", type=int, default=FULL.repeat,
                        help="runs of every training-set case (median and minimum reported)")
    parser.add_argument("--redis-url", default=REDIS_URL,
                        help="the Redis database the online cases flush and fill")
    parser.add_argument("--smoke", action="store_true", help="a small run, under a minute")
    parser.add_argument("--online-only", action="store_true",
                        help="the online store cases only (no training sets, no Feast)")
    parser.add_argument("--seed", type=int, default=DemoSpec().seed)
    parser.add_argument("--work-dir", default="/tmp/tideline-store-bench")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    dispatch(parser.parse_args(), run_case, run_bench)


if __name__ == "__main__":
    main()
