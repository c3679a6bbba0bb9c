"""The Redis online store. Keys:

    tl:<view>:state                  the view's `OnlineState` (JSON)
    tl:<view>:<version>:<entity>     one entity's values, a JSON array in the state's column order

A new version is written under its own prefix and switched to by replacing the state, then the
old version's keys are unlinked. A read fetches the state and the rows in one Lua script, which
Redis runs atomically, so a reader never pairs one version's state with another's rows.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import redis

from features.online.base import OnlineState, decode_rows, encode_rows
from tideline.errors import OnlineStoreUnavailable

_BATCH = 5_000

_READ = """
local state = redis.call('GET', KEYS[1])
if not state then return {false} end
local version = cjson.decode(state)['version']
local out = {state}
for i = 1, #ARGV, 1000 do
  local chunk = {}
  for j = i, math.min(i + 999, #ARGV) do
    chunk[#chunk + 1] = KEYS[2] .. version .. ':' .. ARGV[j]
  end
  local values = redis.call('MGET', unpack(chunk))
  for j = 1, #values do out[#out + 1] = values[j] end
end
return out
"""


def _prefix(view: str) -> str:
    return f"tl:{view}:"


class RedisOnlineStore:
    name = "redis"

    def __init__(self, url: str, socket_timeout: float = 5.0) -> None:
        self.url = url
        self._where = redis.connection.parse_url(url)
        self._client = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                            socket_connect_timeout=socket_timeout)
        self._read = self._client.register_script(_READ)

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

    def _unlink_version(self, view: str, version: str) -> None:
        pipe = self._client.pipeline(transaction=False)
        for k, key in enumerate(self._client.scan_iter(match=f"{_prefix(view)}{version}:*",
                                                       count=_BATCH)):
            pipe.unlink(key)
            if k % _BATCH == _BATCH - 1:
                pipe.execute()
        pipe.execute()

    def write(self, state: OnlineState, rows: pa.Table, deleted: Sequence[str],
              replace: bool) -> None:
        prefix = f"{_prefix(state.view)}{state.version}:"
        keys = rows.column(state.key).cast(pa.string()).to_pylist()
        values = encode_rows(rows, state.columns)
        with self._reachable():
            old = self.state(state.view)
            if replace and old is not None and old.version == state.version:
                replace = False  # the same version again: overwrite in place, then drop the rest
                deleted = [*deleted, *self._stale_keys(state.view, state.version, keys)]
            elif replace:
                self._unlink_version(state.view, state.version)  # leftovers of a failed write
            pipe = self._client.pipeline(transaction=False)
            for start in range(0, len(keys), _BATCH):
                pipe.mset({prefix + k: v for k, v in zip(keys[start:start + _BATCH],
                                                         values[start:start + _BATCH],
                                                         strict=True)})
                pipe.execute()
            for start in range(0, len(deleted), _BATCH):
                pipe.unlink(*[prefix + k for k in deleted[start:start + _BATCH]])
                pipe.execute()
            self._client.set(_prefix(state.view) + "state", state.to_json())
            if old is not None and old.version != state.version:
                self._unlink_version(state.view, old.version)

    def _stale_keys(self, view: str, version: str, keep: Sequence[str]) -> list[str]:
        prefix = f"{_prefix(view)}{version}:"
        kept = set(keep)
        return [key[len(prefix):] for key in (k.decode() for k in self._client.scan_iter(
            match=prefix + "*", count=_BATCH)) if key[len(prefix):] not in kept]

    def read(self, view: str, keys: Sequence[str]) -> tuple[OnlineState | None,
                                                           list[list[Any] | None]]:
        with self._reachable():
            out = self._read(keys=[_prefix(view) + "state", _prefix(view)], args=list(keys))
        if not out or out[0] is None:
            return None, [None] * len(keys)
        state = OnlineState.from_json(out[0])
        return state, decode_rows(state, out[1:])

    def drop(self, view: str) -> None:
        with self._reachable():
            state = self.state(view)
            if state is not None:
                self._unlink_version(view, state.version)
            self._client.delete(_prefix(view) + "state")

    def close(self) -> None:
        self._client.close()
