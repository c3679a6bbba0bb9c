"""The online store contract, run against SQLite and the machine's real Redis: round trips of
every value type, version switches, incremental writes, failures that leave the old contents,
and online values equal to offline retrieval at the same time."""
from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import redis as redis_client
from tideline.core.errors import OnlineStoreUnavailable, RetrievalError
from tideline.demo.views import CHURN_VIEWS, SPENDING
from tideline.features.materialize import as_of_time
from tideline.features.online.base import (
    OnlineState,
    OnlineStore,
    arrow_types,
    feature_columns,
    forget_entities,
)
from tideline.features.online.redis import RedisOnlineStore
from tideline.features.online.sqlite import SQLiteOnlineStore
from tideline.features.store import FeatureStore

from tests.features.built import AS_OF, build_features, copied_store
from tests.services import Redis, start_or_skip


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.service("redis"))])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        store: OnlineStore = SQLiteOnlineStore(tmp_path / "online.db")
    else:
        url = request.getfixturevalue("redis_server").url
        redis_client.Redis.from_url(url).flushdb()
        store = RedisOnlineStore(url)
    yield store
    store.close()


def table(version: int = 1) -> pa.Table:
    return pa.table({
        "customer_id": ["a", "b", "c", 'd"quoted\\'],
        "spend": pa.array([1.5, None, float("inf"), 0.1 + 0.2 * version]),
        "count": pa.array([1, 2, None, 4 * version], pa.int64()),
        "segment": ["gold", "ünïcode \n line", None, f"v{version}"],
        "active": [True, False, None, True],
        "last_seen": pa.array([datetime(2026, 9, 1, 12, tzinfo=UTC), None,
                               datetime(2026, 8, 1, tzinfo=UTC),
                               datetime(2026, 7, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
    })


def state(rows: pa.Table, version: str = "v1", as_of: date = date(2026, 9, 1)) -> OnlineState:
    columns = tuple(rows.column_names[1:])
    return OnlineState(view="spending", version=version, as_of=as_of, key="customer_id",
                       columns=columns, types=arrow_types(rows.schema, columns), ttl_days=None,
                       source_commit="c0", written_at=datetime(2026, 9, 2, tzinfo=UTC))


def expected(rows: pa.Table, key: str) -> list:
    record = next(r for r in rows.to_pylist() if r["customer_id"] == key)
    values = [record[c] for c in rows.column_names[1:]]
    return [pd.Timestamp(v) if isinstance(v, datetime) else v for v in values]


def test_rows_of_every_type_come_back_as_written(online: OnlineStore) -> None:
    rows = table()
    online.write(state(rows), rows, [], replace=True)
    got_state, got = online.read("spending", ['d"quoted\\', "missing", "a", "a"])
    assert got_state == state(rows)
    assert got[1] is None
    assert got[0] == expected(rows, 'd"quoted\\') and got[2] == got[3] == expected(rows, "a")
    _, [b, c] = online.read("spending", ["b", "c"])
    assert b == expected(rows, "b") and c[0] == float("inf") and c[1] is None
    assert online.read("nothing", ["a"]) == (None, [None])


@pytest.mark.parametrize("keys", [["a", "b", "c", 'd"quoted\\'], ["a"], ["missing", "a"],
                                  ["missing"]])
def test_read_rows_become_the_columns_arrow_gives_pandas(online: OnlineStore,
                                                         keys: list[str]) -> None:
    """Nulls decide some dtypes (an integer column with one is float64, a boolean one object),
    so the columns are compared with Arrow's own conversion of the rows, missing ones null."""
    rows = table()
    online.write(state(rows), rows, [], replace=True)
    got_state, got = online.read("spending", keys)
    frame = pd.DataFrame(dict(zip(got_state.columns,
                                  feature_columns(got_state, got, got_state.columns),
                                  strict=True)))
    where = pc.index_in(pa.array(keys), value_set=rows.column("customer_id"))
    pd.testing.assert_frame_equal(frame, rows.take(where).drop_columns("customer_id").to_pandas())


def test_several_views_are_read_at_once_each_with_its_own_state(online: OnlineStore) -> None:
    rows, other = table(1), table(2)
    online.write(state(rows), rows, [], replace=True)
    online.write(replace(state(other, "v7"), view="activity"), other, [], replace=True)
    keys = ["b", "missing", "a"]
    together = online.read_views(["spending", "nothing", "activity"], keys)
    assert together == [online.read("spending", keys), (None, [None] * 3),
                        online.read("activity", keys)]
    assert [s.version if s else None for s, _ in together] == ["v1", None, "v7"]
    assert together[2][1][0] == expected(other, "b")


def test_a_new_version_replaces_the_old_one_whole(online: OnlineStore) -> None:
    online.write(state(table(1)), table(1), [], replace=True)
    online.write(state(table(2), "v2"), table(2).slice(1, 3), [], replace=True)
    got_state, got = online.read("spending", ["a", "d\"quoted\\"])
    assert got_state.version == "v2"
    assert got[0] is None  # 'a' is not in v2: nothing of v1 is left to read
    assert got[1] == expected(table(2), 'd"quoted\\')
    if isinstance(online, RedisOnlineStore):
        assert not list(online._client.scan_iter(match="tl:spending:v1:*"))
    else:
        connection = online._connect()
        assert connection.execute('SELECT count(*), max("count") FROM spending').fetchone() == (
            3, 8)
        names = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        assert "spending@v1" not in names


def test_a_reader_follows_a_version_switch_and_a_drop(online: OnlineStore) -> None:
    key = 'd"quoted\\'
    online.write(state(table(1)), table(1), [], replace=True)
    assert online.read("spending", [key])[1] == [expected(table(1), key)]
    online.write(state(table(2), "v2"), table(2), [], replace=True)
    got_state, got = online.read("spending", [key])
    assert got_state.version == "v2" and got == [expected(table(2), key)]
    online.drop("spending")
    assert online.read("spending", [key]) == (None, [None])


def test_an_incremental_write_updates_and_deletes_in_place(online: OnlineStore) -> None:
    online.write(state(table(1)), table(1), [], replace=True)
    online.write(state(table(2), as_of=date(2026, 9, 2)), table(2).slice(3, 1), ["b"],
                 replace=False)
    got_state, got = online.read("spending", ["a", "b", 'd"quoted\\'])
    assert got_state.as_of == date(2026, 9, 2)
    assert got == [expected(table(1), "a"), None, expected(table(2), 'd"quoted\\')]


def test_forgetting_an_entity_deletes_it_from_every_view_it_is_in(online: OnlineStore
                                                                   ) -> None:
    online.write(state(table(1)), table(1), [], replace=True)
    other = replace(state(table(1)), view="profile")
    online.write(other, table(1).slice(0, 2), [], replace=True)
    removed = forget_entities(online, ["spending", "profile", "never-written"], "customer_id",
                              ["b", "c", "nobody"])
    assert removed == {"spending": 2, "profile": 1}
    got_state, got = online.read("spending", ["a", "b", "c", 'd"quoted\\'])
    assert got_state == state(table(1))  # version and as-of stay as they were
    assert got == [expected(table(1), "a"), None, None, expected(table(1), 'd"quoted\\')]
    assert online.read("profile", ["a", "b"])[1] == [expected(table(1), "a"), None]
    assert forget_entities(online, ["spending"], "customer_id", ["b"]) == {"spending": 0}


def test_a_failed_write_leaves_the_previous_contents(online: OnlineStore) -> None:
    online.write(state(table(1)), table(1), [], replace=True)
    bad = table(2).append_column("tags", pa.array([[1], [2], [3], [4]]))
    with pytest.raises((TypeError, sqlite3.Error)):
        online.write(state(bad, "v2"), bad, [], replace=True)
    got_state, got = online.read("spending", ["a"])
    assert got_state.version == "v1" and got == [expected(table(1), "a")]


def test_an_unreachable_store_is_named() -> None:
    with pytest.raises(OnlineStoreUnavailable, match="redis://127.0.0.1:1 is unreachable"):
        RedisOnlineStore("redis://:secret@127.0.0.1:1/0", socket_timeout=1).state("x")
    with pytest.raises(OnlineStoreUnavailable, match="no/such/dir/online.db"):
        SQLiteOnlineStore("/no/such/dir/online.db")


# -- through the feature store -------------------------------------------------------------

@pytest.fixture
def store(lake_template: Path, tmp_path: Path, online: OnlineStore) -> FeatureStore:
    return copied_store(lake_template, tmp_path, online=online)


ALL = [f"{view.name}:*" for view in CHURN_VIEWS]


def offline_at(store: FeatureStore, ids: list[str], day: date) -> pd.DataFrame:
    rows = pd.DataFrame({"customer_id": ids, "event_timestamp": as_of_time(day)})
    return store.get_training_set(rows, ALL, save=False).frame.drop(columns="event_timestamp")


def test_online_values_equal_offline_retrieval_at_the_same_time(store: FeatureStore) -> None:
    ids = [f"C{i:07d}" for i in range(1, 126)]  # the last five are unknown
    first = store.materialize_online(as_of=AS_OF[1])
    assert {w.mode for w in first} == {"full"}
    online = store.get_online_features(ids, ALL)
    pd.testing.assert_frame_equal(online.frame, offline_at(store, ids, AS_OF[1]))
    assert online.views[SPENDING.name] == {"version": SPENDING.version,
                                           "as_of": "2026-08-15", "stale": False}

    second = store.materialize_online()  # the newest table: only what changed is written
    spending = next(w for w in second if w.view == SPENDING.name)
    assert spending.mode == "incremental" and spending.as_of == AS_OF[2]
    assert 0 < spending.written < len(ids) - 5
    pd.testing.assert_frame_equal(store.get_online_features(ids, ALL).frame,
                                  offline_at(store, ids, AS_OF[2]))
    assert {w.mode for w in store.materialize_online()} == {"unchanged"}


def test_a_view_past_its_ttl_serves_nulls(store: FeatureStore) -> None:
    store.views = [replace(v, ttl_days=7) for v in store.views]
    store.materialize_online()
    fresh = store.get_online_features(["C0000001"], ["spend_30d"],
                                      now=datetime(2026, 9, 7, 23, tzinfo=UTC))
    stale = store.get_online_features(["C0000001"], ["spend_30d"],
                                      now=datetime(2026, 9, 8, tzinfo=UTC))
    assert np.isfinite(fresh.frame["spend_30d"][0]) and not fresh.views[SPENDING.name]["stale"]
    assert stale.frame["spend_30d"].isna().all() and stale.views[SPENDING.name]["stale"]


def test_serving_refuses_a_version_the_definitions_do_not_have(store: FeatureStore) -> None:
    with pytest.raises(RetrievalError, match="not in the online store yet"):
        store.get_online_features(["C0000001"], ["spend_30d"])
    store.materialize_online()
    store.views = [replace(SPENDING, features=SPENDING.features[1:], derived=())]
    with pytest.raises(RetrievalError, match="at version .* the definitions are at"):
        store.get_online_features(["C0000001"], ["spend_30d"])


@contextmanager
def fault_on_third_batch(monkeypatch: pytest.MonkeyPatch, fault: Callable[[], None]
                         ) -> Iterator[None]:
    """Batches of 20 keys; `fault` happens just before the third batch (MSET) is sent."""
    monkeypatch.setattr("tideline.features.online.redis._BATCH", 20)
    connection = redis_client.connection.Connection
    send = connection.send_packed_command
    calls = itertools.count(1)

    def faulty(self, command, *args, **kwargs):  # noqa: ANN001, ANN202
        if b"\r\nMSET\r\n" in bytes(command[0]) and next(calls) == 3:
            fault()
        return send(self, command, *args, **kwargs)

    monkeypatch.setattr(connection, "send_packed_command", faulty)
    try:
        yield
    finally:
        monkeypatch.setattr(connection, "send_packed_command", send)


@pytest.fixture
def private_redis() -> Iterator[Redis]:
    """A Redis server of the test's own (no persistence), so a test may kill and restart it."""
    server = start_or_skip("redis", Redis.create)
    yield server
    server.close()


def test_redis_killed_mid_materialisation_then_a_rerun_completes(
        private_redis: Redis, lake_template: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = copied_store(lake_template, tmp_path,
                         online=RedisOnlineStore(private_redis.url, socket_timeout=2))
    store.materialize_online(as_of=AS_OF[1])

    # a new version of one view is being written when the server dies after the first batch
    changed = replace(SPENDING, features=SPENDING.features[:-1])
    build_features(store.lake, [AS_OF[2]], views=[changed])
    store.views = [changed if v.name == SPENDING.name else v for v in CHURN_VIEWS]
    def die() -> None:
        private_redis.process.kill()
        private_redis.process.wait()

    with fault_on_third_batch(monkeypatch, die), pytest.raises(OnlineStoreUnavailable,
                                                               match="unreachable"):
        store.materialize_online()

    private_redis.start()  # back empty (no persistence): the re-run writes everything again
    writes = store.materialize_online()
    assert {w.mode for w in writes} == {"full"}
    ids = [f"C{i:07d}" for i in range(1, 121)]
    pd.testing.assert_frame_equal(store.get_online_features(ids, ALL).frame,
                                  offline_at(store, ids, AS_OF[2]))


def test_a_new_version_that_fails_half_way_leaves_readers_on_the_old_one(
        lake_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        private_redis: Redis) -> None:
    online = RedisOnlineStore(private_redis.url)
    store = copied_store(lake_template, tmp_path, [SPENDING], online)
    store.materialize_online()
    before = store.get_online_features([f"C{i:07d}" for i in range(1, 121)], ["spend_30d"])

    changed = replace(SPENDING, features=SPENDING.features[:-1])
    build_features(store.lake, [AS_OF[2]], views=[changed])
    store.views = [changed]
    def reset() -> None:
        raise redis_client.ConnectionError("connection reset by peer")

    with fault_on_third_batch(monkeypatch, reset), pytest.raises(OnlineStoreUnavailable):
        store.materialize_online()
    assert online._client.keys(f"tl:{SPENDING.name}:{changed.version}:*")  # half written
    assert online.state(SPENDING.name).version == SPENDING.version
    store.views = [SPENDING]  # a reader of the old definitions still gets the old values whole
    pd.testing.assert_frame_equal(
        store.get_online_features([f"C{i:07d}" for i in range(1, 121)], ["spend_30d"]).frame,
        before.frame)
    store.views = [changed]
    assert {w.mode for w in store.materialize_online()} == {"full"}
    assert not online._client.keys(f"tl:{SPENDING.name}:{SPENDING.version}:*")
