"""Repeated rows across batches: the rules that compare rows with earlier ones (a key seen
before, an exact duplicate, a unique column's value seen before) give a dataset checked in
batches the verdicts it gets whole, in memory bounded by the rows that do repeat.

A first pass hashes what each rule compares (the coerced key, every value of a row, the unique
column) into files on disk, split by the hashes' top bits, so that the hashes seen more than
once are found a file at a time (`Spill`). In the second pass, rows with such a hash are the
candidates: each batch is checked together with the earlier candidates sharing its candidates'
hashes (`Earlier`), in input order, so that the exact checks of `rules` see every earlier row
that could be the one repeated, and a hash collision only costs a row kept for comparison.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import pandas as pd
from tideline.ingestion.contracts import Contract
from tideline.ingestion.validation.coercion import coerce
from tideline.ingestion.validation.rules import MIX, typed_hash

Spec = tuple[Literal["key", "row", "unique"], tuple[str, ...]]
SPILL_BITS = 6
"""Spill files per rule, by the hashes' top bits: each is read alone, 1/64 of the hashes."""


def repeat_specs(contract: Contract, columns: list[str]) -> list[Spec]:
    """What the repeat rules compare: the key (exact duplicates share it too), else whole rows;
    and each unique column that is not the key."""
    specs: list[Spec] = []
    if contract.key and all(name in columns for name in contract.key):
        specs.append(("key", tuple(contract.key)))
    else:
        specs.append(("row", tuple(columns)))
    specs += [("unique", (column.name,)) for column in contract.columns
              if column.unique and column.name in columns and [column.name] != contract.key]
    return specs


def spec_hashes(frame: pd.DataFrame, contract: Contract, spec: Spec
                ) -> tuple[np.ndarray, np.ndarray]:
    """A hash of what `spec` compares for each row (equal values, equal hashes), and which rows
    take part: all for keys and rows, a unique column's valid values only."""
    kind, names = spec
    declared = {column.name for column in contract.columns}
    hashes = np.zeros(len(frame), dtype=np.uint64)
    counted = np.ones(len(frame), dtype=bool)
    for name in names:
        if name in declared:
            typed = coerce(frame[name], contract.column(name))
            part = typed_hash(typed)
            if kind == "unique":
                counted &= typed.valid
        else:  # a column the contract does not declare compares as received
            part = pd.util.hash_pandas_object(frame[name], index=False).to_numpy()
        hashes = hashes * MIX ^ part
    return hashes, counted


class Spill:
    """Hashes written to disk as they come, one set of files per spec."""

    def __init__(self, directory: Path, specs: int) -> None:
        self._directory = directory
        self._files: dict[tuple[int, int], BinaryIO] = {}
        self._specs = specs

    def add(self, spec: int, hashes: np.ndarray) -> None:
        parts = (hashes >> np.uint64(64 - SPILL_BITS)).astype(np.uint8)
        order = np.argsort(parts, kind="stable")  # of small integers: a radix sort
        sizes = np.bincount(parts, minlength=2**SPILL_BITS)
        ordered = hashes[order]
        for part, stop in zip(np.flatnonzero(sizes), np.cumsum(sizes)[sizes > 0], strict=True):
            if (spec, part) not in self._files:
                self._files[spec, part] = (self._directory / f"{spec}-{part}.bin").open("wb")
            self._files[spec, part].write(ordered[stop - sizes[part]:stop].tobytes())

    def repeated(self, spec: int) -> np.ndarray:
        """The hashes of `spec` added more than once, sorted."""
        found = []
        for part in range(2**SPILL_BITS):
            handle = self._files.pop((spec, part), None)
            if handle is None:
                continue
            handle.close()
            hashes = pd.Series(np.fromfile(handle.name, dtype=np.uint64))
            Path(handle.name).unlink()
            # a hash table: half the time of sorting the part
            found.append(np.unique(hashes[hashes.duplicated()].to_numpy()))
        return np.concatenate(found) if found else np.zeros(0, dtype=np.uint64)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


class Earlier:
    """Earlier batches' candidate rows, as received, with their input numbers and hashes."""

    def __init__(self, specs: int) -> None:
        self._frames: list[pd.DataFrame] = []
        self._numbers: list[np.ndarray] = []
        self._hashes: list[list[np.ndarray]] = [[] for _ in range(specs)]

    def matching(self, hashes: list[np.ndarray]) -> tuple[pd.DataFrame | None, np.ndarray]:
        """The kept rows sharing any spec's hash with `hashes` (per spec), in input order."""
        if not self._frames:
            return None, np.zeros(0, dtype=np.int64)
        match = np.zeros(sum(len(f) for f in self._frames), dtype=bool)
        for mine, theirs in zip(hashes, self._hashes, strict=True):
            if mine.size:
                match |= np.isin(np.concatenate(theirs), mine)
        if not match.any():
            return None, np.zeros(0, dtype=np.int64)
        frame = pd.concat(self._frames, ignore_index=True).iloc[np.flatnonzero(match)]
        return frame.reset_index(drop=True), np.concatenate(self._numbers)[match]

    def keep(self, frame: pd.DataFrame, numbers: np.ndarray, hashes: list[np.ndarray]) -> None:
        """Rows of this batch that later batches may repeat."""
        if len(frame):
            self._frames.append(frame.reset_index(drop=True))
            self._numbers.append(numbers)
            for kept, mine in zip(self._hashes, hashes, strict=True):
                kept.append(mine)
