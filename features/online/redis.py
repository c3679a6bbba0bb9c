"""The Redis online store. Keys:

    tl:<view>:state                  the view's `OnlineState` (JSON)
    tl:<view>:<version>:<entity>     one entity's values, a JSON array in the state's column order

A new version is written under its own prefix and switched to by replacing the state, then the
old version's keys are unlinked. A read fetches the states and rows of every asked view with one
MGET, which Redis runs atomically, asking for the rows of the versions the states named last
time; a state naming another version is read again with its rows, so a reader never pairs one
version's state with another's rows, and a request costs one round trip whatever the number of
views.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis
from tideline.core.errors import OnlineStoreUnavailable
from tideline.features.online.base import OnlineState, decode_rows, encode_rows

_BATCH = 5_000


def _bulk(texts: pa.Array) -> pa.Array:
    """Each text as a RESP bulk string: `$<bytes>\r\n<text>\r\n`."""
    return pc.binary_join_element_wise("$", pc.cast(pc.binary_length(texts), pa.string()),
                                       "\r\n", texts, "\r\n", "")


def _prefix(view: str) -> str:
    return f"tl:{view}:"


class RedisOnlineStore:
    name = "redis"

    def __init__(self, url: str, socket_timeout: float = 5.0) -> None:
        self.url = url
        self._where = redis.connection.parse_url(url)
        self._client = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                            socket_connect_timeout=socket_timeout)
        self._versions: dict[str, str | None] = {}
        """View -> the version its state named at the last read (None: it had no state)."""

    def __repr__(self) -> str:
        return f"RedisOnlineStore({self._address!r})"

    @property
    def _address(self) -> str:
        return f"redis://{self._where.get('host', '127.0.0.1')}:{self._where.get('port', 6379)}"

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise OnlineStoreUnavailable(
                f"online store {self._address} is unreachable ({exc}); offline retrieval still "
                "works, and a re-run of materialisation completes once it is back") from exc

    def state(self, view: str) -> OnlineState | None:
        with self._reachable():
            body = self._client.get(_prefix(view) + "state")
        return None if body is None else OnlineState.from_json(body)

    def _entities(self, view: str, version: str) -> Iterator[str]:
        """The entities a version of a view holds rows for."""
        prefix = f"{_prefix(view)}{version}:"
        for key in self._client.scan_iter(match=prefix + "*", count=_BATCH):
            yield key.decode()[len(prefix):]

    def _unlink(self, view: str, version: str, entities: Iterable[str]) -> None:
        prefix = f"{_prefix(view)}{version}:"
        pipe = self._client.pipeline(transaction=False)
        for k, entity in enumerate(entities, 1):
            pipe.unlink(prefix + entity)
            if k % _BATCH == 0:
                pipe.execute()
        pipe.execute()

    def write(self, state: OnlineState, rows: pa.Table, deleted: Sequence[str],
              replace: bool) -> None:
        prefix = f"{_prefix(state.view)}{state.version}:"
        entities = rows.column(state.key).cast(pa.string()).combine_chunks()
        names = pc.binary_join_element_wise(prefix, entities, "")
        values = encode_rows(rows, state.columns)
        with self._reachable():
            old = self.state(state.view)
            if replace and old is not None and old.version == state.version:
                # the same version again: overwrite in place, then drop the rest
                kept = set(entities.to_pylist())
                deleted = [*deleted, *(e for e in self._entities(state.view, state.version)
                                       if e not in kept)]
            elif replace:  # leftovers of a failed write of this version
                self._unlink(state.view, state.version,
                             list(self._entities(state.view, state.version)))
            for start in range(0, len(entities), _BATCH):
                self._mset(names.slice(start, _BATCH), values.slice(start, _BATCH))
            self._unlink(state.view, state.version, deleted)
            self._client.set(_prefix(state.view) + "state", state.to_json())
            if old is not None and old.version != state.version:
                self._unlink(old.view, old.version, list(self._entities(old.view, old.version)))

    def _mset(self, names: pa.Array, values: pa.Array) -> None:
        """One MSET, its protocol bytes assembled by Arrow: redis-py's own packing measures and
        encodes every key and value in Python, a large share of a stream processor's time."""
        pairs = pc.binary_join_element_wise(_bulk(names), _bulk(values), "")
        offsets = np.frombuffer(pairs.buffers()[1], dtype=np.int32)[
            pairs.offset:pairs.offset + len(pairs) + 1]
        body = memoryview(pairs.buffers()[2])[offsets[0]:offsets[-1]]
        header = f"*{2 * len(pairs) + 1}\r\n$4\r\nMSET\r\n".encode()
        pool = self._client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command([header, body])
            connection.read_response()
        except BaseException:
            connection.disconnect()  # never hand on a connection with a reply unread
            raise
        finally:
            pool.release(connection)

    def read(self, view: str, keys: Sequence[str]) -> tuple[OnlineState | None,
                                                           list[list[Any] | None]]:
        return self.read_views([view], keys)[0]

    def read_views(self, views: Sequence[str], keys: Sequence[str]
                   ) -> list[tuple[OnlineState | None, list[list[Any] | None]]]:
        """One MGET, which Redis answers at one instant, for the states and for the rows under
        the versions the states named at the last read; again when a state names another
        version (a switch since, or the first read of a view)."""
        while True:
            asked = [self._versions.get(view) for view in views]
            names = [_prefix(view) + "state" for view in views]
            for view, version in zip(views, asked, strict=True):
                if version is not None:
                    prefix = f"{_prefix(view)}{version}:"
                    names += [prefix + key for key in keys]
            with self._reachable():
                values = self._client.mget(names)
            states = [None if body is None else OnlineState.from_json(body)
                      for body in values[:len(views)]]
            current = [None if state is None else state.version for state in states]
            if current == asked:
                break
            self._versions.update(zip(views, current, strict=True))
        results, at = [], len(views)
        for state in states:
            if state is None:
                results.append((None, [None] * len(keys)))
                continue
            results.append((state, decode_rows(state, values[at:at + len(keys)])))
            at += len(keys)
        return results

    def drop(self, view: str) -> None:
        with self._reachable():
            state = self.state(view)
            if state is not None:
                self._unlink(view, state.version, list(self._entities(view, state.version)))
            self._client.delete(_prefix(view) + "state")

    def close(self) -> None:
        self._client.close()
