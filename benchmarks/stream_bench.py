"""Stream processing throughput and latency (issue "Real-time features", benchmark
`stream_bench`): `tideline stream`'s processor against NATS JetStream and Redis on this machine.

    python benchmarks/stream_bench.py [--customers 100000] [--history 600000]
        [--events 400000] [--rate 10000] [--seconds 20] [--batch-size 5000]
        [--cases transport,one,two,latency] [--work-dir DIR] [--smoke]

Data (generated, seeded): app events of `--customers` customers with the demo's columns
(event id, customer id, event time, event type, session id, duration). `--history` events over
the 30 days before 2026-10-01 go into a local lake as the clean `events` table (what the
processor builds its state from, untimed); the streamed events follow, a few per second of
event time, JSON as the ingestion stream carries them, published to the JetStream stream
`TIDELINE_BENCH` on subjects `tideline-bench.events.p0|p1` (the partition is a hash of the
customer id, as a producer keyed by customer would do). The online store is the real Redis
(database 13, flushed first). The processors checkpoint every 10 s (to the lake, on a worker
thread) and refresh every entity over 300 s (the default), as in production. Views: the
demo's streamable ones, `customer_activity` (11 features over 7/30-day windows) and
`customer_signals` (17: 1-hour to 7-day windows, sessions, EMA, Welford's lifetime mean and
std).

Cases, each in a fresh interpreter (`--case`):
- `transport`: a minimal consumer that only takes messages (`--batch-size` at a time) and
  acks them (ack-all of each batch's last message): through the processor's broker (a push
  consumer into a local queue, `streaming/brokers.py`), the transport's limit in Python, and
  through nats-py's pull `fetch` for comparison.
- `one`: one processor reads both partitions (`--events` preloaded messages, `start=all`).
- `two`: two processors at once, one partition each, on their own copy of the lake.
  Throughput is the events of every batch but the first over the time from the first batch's
  ack to the last's (the state build and the final checkpoint are reported apart); for two
  processors, also the events acked while both consume over that stretch (sustained).
- `latency`: one processor reading live while this process publishes at `--rate` events/s
  for `--seconds`; latency is from the message's JetStream timestamp (when the server stored
  it) to the end of the Redis write that makes its values visible, for every message.

Each case's result also holds the peak RSS of its process tree (`tree_peak_rss_bytes`, sampled
every 0.2 s). Targets (the issue's): 50k events/s aggregate; p99 under 250 ms at 10k events/s.
Writes benchmarks/out/stream_bench.json (smoke: stream_bench_smoke.json). `--smoke`: 5k customers,
50k events, 2k events/s for 5 s.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import tideline.demo
from harness import (
    Child,
    Timer,
    agreement,
    agreement_text,
    dispatch,
    results_path,
    verdict,
    write_results,
)

NATS = os.environ.get("TIDELINE_BENCH_NATS_URL", "nats://127.0.0.1:4222")
REDIS = os.environ.get("TIDELINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
"""The servers (`--nats-url`, `--redis-url` set these for the cases' interpreters too)."""
STREAM, PREFIX = "TIDELINE_BENCH", "tideline-bench.events"
START = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=3)
"""A few days back: the processor's guard against events from the future stays on (events are
refused more than `max_future_seconds` ahead of the wall clock), as in production."""
TYPES = ["login", "view", "search", "add_to_cart", "payment_failed", "cancel_page"]


def events(customers: int, n: int, start: pd.Timestamp, seconds: int, seed: int,
           prefix: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.char.add("C", np.char.zfill(rng.integers(1, customers + 1, n).astype(str), 7))
    return pd.DataFrame({
        "event_id": np.char.add(prefix, np.arange(n).astype(str)).astype(object),
        "customer_id": ids.astype(object),
        "ts": start + pd.to_timedelta(np.sort(rng.integers(0, seconds * 1000, n)), unit="ms"),
        "event_type": rng.choice(TYPES, n, p=[.3, .4, .15, .1, .03, .02]),
        "session_id": np.char.add("s", rng.integers(0, 20 * customers, n).astype(str)
                                  ).astype(object),
        "duration_s": rng.exponential(60.0, n).round(3)})


def history_events(args: argparse.Namespace) -> pd.DataFrame:
    """The events in the lake before the stream (the state's start)."""
    return events(args.customers, args.history, START - pd.Timedelta(days=30), 30 * 86_400,
                  seed=1, prefix="h")


def live_events(args: argparse.Namespace) -> pd.DataFrame:
    """The events preloaded on the stream, a few per second of event time after the history."""
    return events(args.customers, args.events, START, max(args.events // 100, 60), seed=2,
                  prefix="e")


def payloads(frame: pd.DataFrame) -> tuple[list[bytes], np.ndarray]:
    """Each event as the JSON message a producer sends, and its partition (0 or 1)."""
    import orjson

    out = frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    messages = [orjson.dumps(row) for row in out.to_dict("records")]
    partition = pd.util.hash_array(frame["customer_id"].to_numpy()) % 2
    return messages, partition


def prepare(args: argparse.Namespace, work: Path) -> None:
    """The lake with the history as the clean events table, and the stream preloaded."""
    from tideline.lake.buckets import clean_path, write_bucketed
    from tideline.lake.local import LocalLake

    shutil.rmtree(work, ignore_errors=True)
    history = history_events(args)
    lake = LocalLake(work / "base" / "lake")
    days = history["ts"].dt.strftime("%Y-%m-%d")
    for day, rows in history.groupby(days):
        write_bucketed(lake, "main", clean_path("events", day, "bench"),
                       rows.reset_index(drop=True), "customer_id", 4)
    lake.commit("main", "bench history")
    messages, partition = payloads(live_events(args))
    asyncio.run(reset_stream())
    asyncio.run(publish_all(messages, partition))


async def reset_stream() -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(NATS)
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(STREAM)
    await js.add_stream(name=STREAM, subjects=[f"{PREFIX}.>"])
    await nc.close()


async def publish_all(messages: list[bytes], partition: np.ndarray) -> None:
    import nats

    nc = await nats.connect(NATS)
    for k, (message, p) in enumerate(zip(messages, partition, strict=True)):
        await nc.publish(f"{PREFIX}.p{p}", message)
        if k % 20_000 == 0:
            await nc.flush()
    await nc.flush()
    await nc.close()


# -- cases (children) -----------------------------------------------------------------------


def run_case(case: dict) -> dict:
    if case["kind"] == "transport":
        return asyncio.run(transport(case))
    return asyncio.run(processor_case(case))


async def transport(case: dict) -> dict:
    """Only take and acknowledge: through the processor's broker, or nats-py's pull fetch."""
    import nats
    from nats.js import api
    from tideline.streaming.brokers import NatsBroker

    received, first, last = 0, 0.0, 0.0
    if case["name"] == "feed":
        broker = NatsBroker(NATS, f"{PREFIX}.>", "bench-transport", STREAM,
                            in_flight=2 * case["batch_size"], connect_timeout=10)
        await broker.connect()
        await broker.open(1)
        while received < case["events"]:
            batch = await broker.take(case["batch_size"], 5.0)
            first = first or time.perf_counter()
            received += len(batch)
            await broker.acknowledge(batch[-1])
            last = time.perf_counter()
        await broker.close()
        return {"events": received, "seconds": last - first}
    nc = await nats.connect(NATS)
    js = nc.jetstream()
    sub = await js.pull_subscribe(f"{PREFIX}.>", durable="bench-fetch", stream=STREAM,
                                  config=api.ConsumerConfig(ack_policy=api.AckPolicy.ALL,
                                                            max_ack_pending=-1))
    while received < case["events"]:
        batch = await sub.fetch(case["batch_size"], timeout=5)
        first = first or time.perf_counter()
        received += len(batch)
        await batch[-1].ack()
        last = time.perf_counter()
    await js.delete_consumer(STREAM, "bench-fetch")
    await nc.close()
    return {"events": received, "seconds": last - first}


def open_bench_processor(case: dict):  # noqa: ANN201 - a StreamProcessor
    from tideline.core.settings import load_settings
    from tideline.demo.project import declared_project
    from tideline.streaming.processor import StreamConfig, open_processor

    settings = load_settings(data_dir=case["data_dir"], online_store="redis", redis_url=REDIS,
                             feature_views="tideline.demo.views:DEMO_VIEWS")
    config = StreamConfig(name=case["name"], url=NATS, subject=case["subject"],
                          stream=STREAM, start=case["start"], batch_size=case["batch_size"],
                          max_wait_seconds=case.get("max_wait", 0.05),
                          checkpoint_seconds=10)  # the future and lateness guards: defaults
    return open_processor(settings, config, project=declared_project(settings))


async def processor_case(case: dict) -> dict:
    from tideline.core.process import frozen_heap

    processor = open_bench_processor(case)
    with Timer() as load:
        processor.load()
    batches: list[tuple[float, int]] = []
    """(end time, messages) of each batch."""
    latencies: list[np.ndarray] = []

    def measured(messages: list) -> None:  # noqa: ANN001 - nats Msg
        batches.append((time.perf_counter(), len(messages)))
        if case["kind"] == "latency":
            stored = np.array([m.stored_at for m in messages])
            latencies.append(time.time() - stored)

    stop = asyncio.Event()
    whole = case["kind"] == "one"
    """`one` reads until it has every preloaded event (its values are checked), not until a
    moment without messages, which a loaded machine can produce mid-stream."""

    def counted(messages: list) -> None:  # noqa: ANN001 - nats Msg
        measured(messages)
        if whole and sum(n for _, n in batches) >= case["events"]:
            stop.set()

    processor.on_batch = counted
    if case["kind"] == "latency":
        asyncio.get_running_loop().call_later(case["seconds"] + 10, stop.set)
    elif whole:
        asyncio.get_running_loop().call_later(600, stop.set)  # never hang a run
    with frozen_heap():  # as `tideline stream` runs it
        await processor.run(stop, idle_exit=case["kind"] == "two")
    closing = time.perf_counter() - (batches[-1][0] if batches else time.perf_counter())
    out = {"events": int(sum(n for _, n in batches)), "batches": len(batches),
           "state_build_seconds": load.seconds, "final_refresh_and_checkpoint_seconds": closing,
           "timed_events": int(sum(n for _, n in batches[1:])),
           "first_end": batches[0][0] if batches else 0.0,
           "last_end": batches[-1][0] if batches else 0.0, "batch_ends": batches,
           "entities": len(processor.state.entities()), "clock": int(processor.state.clock)}
    if latencies:
        lat = np.concatenate(latencies) * 1000
        out.update(latency_ms={"p50": float(np.percentile(lat, 50)),
                               "p99": float(np.percentile(lat, 99)),
                               "max": float(lat.max())})
    return out


# -- agreement ----------------------------------------------------------------------------------


def recomputed(args: argparse.Namespace, clock: int) -> dict[str, pd.DataFrame]:
    """Every streamable view's values recomputed by the batch engine from the history and every
    streamed event, as of just after the newest (the processor's clock + 1 ns), by customer."""
    from tideline.demo.views import DEMO_VIEWS
    from tideline.features.engine import Events, Spine, compute_views
    from tideline.streaming.processor import streamable_views

    views = streamable_views(DEMO_VIEWS, "events")
    frame = pd.concat([history_events(args), live_events(args)], ignore_index=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    keys = np.unique(frame["customer_id"].to_numpy(str)).astype(object)
    values = compute_views(views, {"events": Events.from_table(table, "customer_id", "ts")},
                           Spine.of(keys, [pd.Timestamp(clock + 1, tz="UTC")] * len(keys)),
                           leading={"customer_id": keys})
    return {view.name: values[["customer_id", *view.feature_names]] for view in views}


def online_values(views: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """What the processor left in Redis for every customer the recomputation has."""
    from tideline.features.online.redis import RedisOnlineStore

    store = RedisOnlineStore(REDIS)
    try:
        found = {}
        for name, expected in views.items():
            keys = expected["customer_id"].tolist()
            state, rows = store.read(name, keys)
            columns = list(state.columns) if state else []
            present = [(key, row) for key, row in zip(keys, rows, strict=True) if row is not None]
            found[name] = pd.DataFrame([row for _, row in present], columns=columns).assign(
                customer_id=[key for key, _ in present])
        return found
    finally:
        store.close()


def stream_agreement(args: argparse.Namespace, clock: int) -> dict[str, dict]:
    """The values `one` wrote to Redis against the batch engine's, per view (rtol 1e-6)."""
    expected = recomputed(args, clock)
    actual = online_values(expected)
    return {f"redis {name}": agreement(f"redis {name}", frame, actual[name], "customer_id")
            for name, frame in expected.items()}


# -- the run ----------------------------------------------------------------------------------


def start_case(case: dict, work: Path) -> Child:
    """A case in its own interpreter; its stderr goes to a log."""
    return Child.case(__file__, case, work / "logs" / f"{case['name']}.log")


def children(cases: list[dict], work: Path) -> list[dict]:
    """Run cases at the same time, each in its own interpreter (with its peak RSS)."""
    started = [start_case(case, work) for case in cases]
    return [child.measured() for child in started]


def copy_lake(work: Path, name: str) -> str:
    target = work / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(work / "base", target)
    return str(target)


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS).flushdb()


def rate(results: list[dict]) -> float:
    """Events per second after each processor's first batch (from the first batch's end to
    the last's), all processors together."""
    total = sum(r["timed_events"] for r in results)
    spent = max(r["last_end"] for r in results) - min(r["first_end"] for r in results)
    return total / spent if spent > 0 else 0.0  # fewer than two batches: nothing to time


def sustained(results: list[dict]) -> float:
    """Events per second of all processors together while every one of them is consuming
    (from the latest first batch's end to the earliest last batch's): the processes start
    their stream a second or so apart (building the state, writing it whole), which `rate`
    counts as time one of them runs alone."""
    start = max(r["first_end"] for r in results)
    end = min(r["last_end"] for r in results)
    if end <= start:
        return 0.0
    return sum(n for r in results for at, n in r["batch_ends"] if start < at <= end) / (
        end - start)


async def publish_paced(rate_per_s: int, seconds: int, customers: int) -> int:
    """Publish live events at `rate_per_s` for `seconds`, in 10 ms ticks."""
    import nats

    live = events(customers, rate_per_s * seconds, START + pd.Timedelta(days=1), seconds,
                  seed=3, prefix="l")
    messages, partition = payloads(live)
    nc = await nats.connect(NATS)
    per_tick, sent = max(rate_per_s // 100, 1), 0
    begin = time.perf_counter()
    while sent < len(messages):
        for message, p in zip(messages[sent:sent + per_tick], partition[sent:sent + per_tick],
                              strict=True):
            await nc.publish(f"{PREFIX}.p{p}", message)
        sent += per_tick
        await nc.flush()
        await asyncio.sleep(max(0.0, begin + sent / rate_per_s - time.perf_counter()))
    await nc.close()
    return sent


def run_bench(args: argparse.Namespace) -> int:
    if args.smoke:
        args.customers, args.history, args.events = 5_000, 30_000, 50_000
        args.rate, args.seconds = 2_000, 5
    work = Path(args.work_dir)
    with Timer() as preparing:
        prepare(args, work)
    print(f"prepared: {args.history:,} history events, {args.events:,} streamed events in "
          f"{preparing.seconds:.0f} s", flush=True)
    common = {"batch_size": args.batch_size, "events": args.events, "start": "all"}
    cases = set(args.cases.split(","))
    checks: dict[str, dict] = {}
    result: dict = {"customers": args.customers, "history_events": args.history,
                    "events": args.events, "batch_size": args.batch_size}
    if "transport" in cases:
        result["transport_events_per_s"] = {
            name: r["events"] / r["seconds"] for name in ("feed", "fetch")
            for r in children([{**common, "kind": "transport", "name": name}], work)}
    if "one" in cases:
        flush_redis()
        result["one"] = children([{**common, "kind": "one", "name": "one",
                                   "subject": f"{PREFIX}.>",
                                   "data_dir": copy_lake(work, "one")}], work)[0]
        result["one_events_per_s"] = rate([result["one"]])
        with Timer() as checking:
            checks = stream_agreement(args, result["one"]["clock"])
        print(f"checked Redis against the batch engine in {checking.seconds:.0f} s: " + "; ".join(
            f"{name}: {agreement_text(check)}" for name, check in checks.items()), flush=True)
    if "two" in cases:
        flush_redis()
        result["two"] = children([{**common, "kind": "two", "name": f"two-p{k}",
                                   "subject": f"{PREFIX}.p{k}",
                                   "data_dir": copy_lake(work, f"two-{k}")}
                                  for k in range(2)], work)
        result["two_events_per_s"] = rate(result["two"])
        result["two_sustained_events_per_s"] = sustained(result["two"])
    if "latency" in cases:
        flush_redis()
        result["latency"] = latency_case(args, work)
    result["agreement"] = checks
    out = write_results(results_path("stream_bench", args.smoke), result)
    for name, per_s in result.get("transport_events_per_s", {}).items():
        print(f"transport only ({name} + ack):{per_s:>12,.0f} events/s")
    if "one" in result:
        print(f"one processor:                {result['one_events_per_s']:>10,.0f} events/s "
              f"(state from {args.history:,} events in "
              f"{result['one']['state_build_seconds']:.1f} s)")
    if "two" in result:
        print(f"two processors:               {result['two_sustained_events_per_s']:>10,.0f} "
              f"events/s while both consume ({result['two_events_per_s']:,.0f} from the "
              "first's first batch to the last's last)")
    if "latency" in result:
        latency = result["latency"]
        lat = latency["latency_ms"]
        print(f"latency at {args.rate:,} events/s for {args.seconds} s: p50 {lat['p50']:.0f} ms, "
              f"p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms ({latency['events']:,} events "
              f"in {latency['batches']:,} batches)")
    print(f"wrote {out}")
    return verdict(checks)


async def consuming(durable: str) -> bool:
    """Whether the processor's consumer exists (it is created once the state is written)."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(NATS)
    try:
        await nc.jetstream().consumer_info(STREAM, durable)
        return True
    except NotFoundError:
        return False
    finally:
        await nc.close()


def latency_case(args: argparse.Namespace, work: Path) -> dict:
    """One live processor; events published at the rate once it has written its state."""
    case = {"kind": "latency", "name": "latency", "subject": f"{PREFIX}.>", "start": "new",
            "batch_size": args.batch_size, "seconds": args.seconds,
            "data_dir": copy_lake(work, "latency"), "max_wait": 0.01}
    child = start_case(case, work)
    deadline = time.monotonic() + 300
    while not asyncio.run(consuming("tideline-stream-latency")):
        if not child.running() or time.monotonic() > deadline:
            raise SystemExit(f"latency case did not start; end of {child.log}:\n"
                             f"{child.log.read_text()[-3000:]}")
        time.sleep(0.2)
    asyncio.run(publish_paced(args.rate, args.seconds, args.customers))
    return child.measured()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=600_000,
                        help="events in the lake before the stream (the state's start)")
    parser.add_argument("--events", type=int, default=400_000, help="preloaded stream events")
    parser.add_argument("--rate", type=int, default=10_000, help="events/s for the latency case")
    parser.add_argument("--seconds", type=int, default=20, help="latency case duration")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--cases", default="transport,one,two,latency",
                        help="which cases to run (comma-separated)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--work-dir", default="/tmp/tideline-stream-bench")
    parser.add_argument("--nats-url", help="NATS JetStream (default: $TIDELINE_BENCH_NATS_URL "
                        "or nats://127.0.0.1:4222)")
    parser.add_argument("--redis-url", help="the Redis database to flush and fill (default: "
                        "$TIDELINE_BENCH_REDIS_URL or redis://127.0.0.1:6379/13)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global NATS, REDIS  # noqa: PLW0603 - this entry point's settings, set once
    NATS, REDIS = args.nats_url or NATS, args.redis_url or REDIS
    # the cases' interpreters inherit the environment
    os.environ.update({"TIDELINE_BENCH_NATS_URL": NATS, "TIDELINE_BENCH_REDIS_URL": REDIS})
    # the processor reads the demo's declared project (its events contract)
    os.environ.setdefault("TIDELINE_PROJECT", str(Path(tideline.demo.__file__).parent
                                                  / "tideline.yaml"))
    dispatch(args, run_case, run_bench)


if __name__ == "__main__":
    main()
