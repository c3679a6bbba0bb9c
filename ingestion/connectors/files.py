"""File sources through fsspec: CSV, Parquet and JSON-lines files at a local path, any fsspec
URL, a directory or a glob of them, read incrementally by which file versions were read.

CSV is parsed by Arrow on every core into text columns; a file with rows of the wrong length is
read again record by record with the `csv` module, which places or rejects each such row.

Checkpoint: ``{"files": {path: {"size": n, "mtime": t, "etag": e}}}`` for every file the source
matched when it was pulled; a later pull reads only paths that are new or whose identity
changed (a changed file is read again in full). Files that no longer match drop out.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from datetime import datetime
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from fsspec.utils import stringify_path
from tideline.core.errors import SourceError, SourceUnavailable
from tideline.ingestion.connectors.windows import filter_window
from tideline.ingestion.rawtext import RAW_TEXT, as_raw_text
from tideline.ingestion.sources import FileSource, Pull, Window

log = logging.getLogger(__name__)

_GLOB_CHARS = ("*", "?", "[")
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified", "created")
_ETAG_KEYS = ("ETag", "etag", "md5Hash", "md5", "checksum")
CSV_BLOCK_BYTES = 16 * 2**20
"""CSV parsed per block of this size, one block per thread: larger than Arrow's 1 MiB
default, for less work per row in parsing and in landing's regrouping by day."""
CSV_FIELD_BYTES = 2**31 - 1
"""The `csv` module's field limit (128 KiB by default): a field Arrow reads, the record by
record reading reads too, rather than failing the file."""


class FileConnector:
    """Reads the files a `FileSource` matches that the checkpoint has not seen in this version."""

    def pull(
        self, source: FileSource, checkpoint: dict[str, Any] | None, window: Window | None
    ) -> Pull:
        fs, listing = list_files(source)
        identities = {path: file_identity(info) for path, info in listing.items()}
        seen = (checkpoint or {}).get("files", {})
        if window is None:
            todo = [path for path in sorted(identities) if seen.get(path) != identities[path]]
        else:
            todo = sorted(identities)
        frames, rejected = [], []
        for path in todo:
            frame, bad = read_file(fs, path, source)
            frames.append(frame)
            rejected.extend(bad)
        frame = concat_frames(frames)
        log.info("source %s: read %d file(s), %d record(s), %d rejected", source.name,
                 len(todo), len(frame), len(rejected))
        if window is not None:
            # a backfill re-reads every file and keeps the window's records; unparsable ones
            # have no time, so they belong to no window (the incremental pull quarantined them)
            return Pull(frame=filter_window(frame, source.timestamp_column, window, source.name),
                        checkpoint=dict(checkpoint or {"files": {}}))
        return Pull(frame=frame, checkpoint={"files": dict(sorted(identities.items()))},
                    rejected=rejected)

    def acknowledge(self, source: FileSource, pull: Pull) -> None:
        """Nothing to do: the checkpoint committed with the data is the acknowledgement."""


def list_files(source: FileSource) -> tuple[fsspec.AbstractFileSystem, dict[str, dict]]:
    """The files the source's URL matches, with the file system's details for each."""
    try:
        fs, root = fsspec.core.url_to_fs(source.url, **source.storage_options)
    except (ValueError, ImportError) as exc:
        raise SourceError(source.name, f"cannot open {source.url!r}: {exc}") from exc
    root = stringify_path(root)
    try:
        if any(char in root for char in _GLOB_CHARS):
            listing = fs.glob(root, detail=True)
        elif fs.isdir(root):
            listing = {path: info for path, info in fs.find(root, detail=True).items()
                       if not path.rsplit("/", 1)[-1].startswith((".", "_"))}
        elif fs.exists(root):
            listing = {root: fs.info(root)}
        else:
            raise SourceError(source.name, f"file not found: {source.url!r}; check `url`")
    except OSError as exc:
        raise SourceUnavailable(source.name, f"cannot list {source.url!r}: {exc}") from exc
    files = {path: info for path, info in listing.items() if info.get("type") != "directory"}
    if not files:
        raise SourceError(source.name, f"no files match {source.url!r}; check `url`")
    return fs, files


def file_identity(info: dict[str, Any]) -> dict[str, Any]:
    """What tells two versions of a file apart, as JSON-safe values (it goes into the lake)."""
    identity: dict[str, Any] = {"size": info.get("size")}
    mtime = next((info[key] for key in _MTIME_KEYS if info.get(key) is not None), None)
    if isinstance(mtime, datetime):
        mtime = mtime.timestamp()
    if mtime is not None:
        identity["mtime"] = mtime if isinstance(mtime, int | float) else str(mtime)
    etag = next((info[key] for key in _ETAG_KEYS if info.get(key)), None)
    if etag is not None:
        identity["etag"] = str(etag).strip('"')
    return identity


def read_file(
    fs: fsspec.AbstractFileSystem, path: str, source: FileSource
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """One file's records and the records of it that could not be parsed."""
    try:
        if source.format == "parquet":
            return read_parquet(fs, path, source), []
        raw = fs.cat_file(path)
    except FileNotFoundError as exc:
        raise SourceError(source.name, f"file {path!r} vanished while being read") from exc
    except OSError as exc:
        raise SourceUnavailable(source.name, f"cannot read {path!r}: {exc}") from exc
    if source.format == "csv":
        return read_csv(raw, path, source)
    return read_jsonl(decode(raw, path, source), path)


def decode(raw: bytes, path: str, source: FileSource) -> str:
    try:
        text = raw.decode(source.encoding)
    except LookupError as exc:
        raise SourceError(source.name, f"unknown encoding {source.encoding!r}; fix `encoding:`"
                          ) from exc
    except UnicodeDecodeError as exc:
        raise SourceError(
            source.name,
            f"{path!r} is not valid {source.encoding} text (byte 0x{raw[exc.start]:02x} at "
            f"offset {exc.start}); set `encoding:` on the source to the file's encoding, "
            "e.g. `encoding: latin-1` or `encoding: cp1252`",
        ) from exc
    return text.removeprefix("\ufeff")


def read_csv(
    raw: bytes, path: str, source: FileSource
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Every value as the text it is (Arrow-backed `string` columns), empty fields as null.
    Rows with more fields than the header, and a last row the file cuts off (no final newline
    and fields missing, or a quote left open), are rejected with their text; short rows
    elsewhere are padded with nulls.

    Arrow parses the file on every core, and stops at a row whose field count differs from the
    header's: it could only skip such a row, not pad it in place, and threaded it cannot say on
    which line it was. A file with such rows (or one Arrow cannot read at all: empty, not UTF-8)
    is read again record by record with `read_ragged_csv`."""
    table = read_regular_csv(as_utf8(raw, path, source))
    if table is None:
        try:
            return read_ragged_csv(decode(raw, path, source), path)
        except csv.Error as exc:
            raise SourceError(source.name, f"{path!r} is not readable CSV: {exc}") from exc
    return as_raw_text(table.rename_columns(column_names(table.column_names))), []


def as_utf8(raw: bytes, path: str, source: FileSource) -> bytes:
    """The file as UTF-8 for Arrow: as it is when it should be UTF-8 (Arrow checks that)."""
    try:
        if codecs.lookup(source.encoding).name == "utf-8":
            return raw
    except LookupError:
        pass  # `decode` names the unknown encoding
    return decode(raw, path, source).encode()


def read_regular_csv(data: bytes) -> pa.Table | None:
    """UTF-8 CSV whose rows all have the header's number of fields, every column as text; None
    for any other file."""
    parse = pa_csv.ParseOptions(newlines_in_values=True)
    try:
        names = pa_csv.open_csv(pa.BufferReader(data), parse_options=parse).schema.names
        convert = pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                        null_values=[""], strings_can_be_null=True)
        return pa_csv.read_csv(pa.BufferReader(data), parse_options=parse,
                               read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                               convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None


def read_ragged_csv(text: str, path: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """`read_csv` record by record with the `csv` module, for files with rows of the wrong
    length: each is placed (padded) or rejected with its text, file and line."""
    lines = io.StringIO(text, newline="").readlines()
    csv.field_size_limit(CSV_FIELD_BYTES)
    reader = csv.reader(lines)
    header: list[str] | None = None
    rows: list[list[str | None]] = []
    rejected: list[tuple[str, str]] = []
    start = 0
    for fields in reader:
        raw = "".join(lines[start:reader.line_num])
        start = reader.line_num
        if not fields:
            continue  # a blank line
        if header is None:
            header = column_names(fields)
            continue
        if reader.line_num == len(lines) and not raw.endswith(("\n", "\r")):
            open_quote = raw.count('"') % 2 == 1
            if open_quote or len(fields) < len(header):
                rejected.append((raw, f"{path}: truncated last record (the file ends "
                                 "mid-record" + (", inside a quoted field)" if open_quote else
                                                 f": {len(fields)} of {len(header)} fields)")))
                continue
        if len(fields) > len(header):
            rejected.append((raw.rstrip("\r\n"), f"{path}: line {reader.line_num}: expected "
                             f"{len(header)} fields, saw {len(fields)}"))
            continue
        rows.append([value if value != "" else None for value in fields]
                    + [None] * (len(header) - len(fields)))
    if header is None:
        return pd.DataFrame(), rejected
    return pd.DataFrame(rows, columns=header, dtype=object).astype(RAW_TEXT), rejected


def column_names(fields: list[str]) -> list[str]:
    """Header names made unique as pandas does (`a`, `a.1`); blank ones named by position."""
    names: list[str] = []
    for position, name in enumerate(fields):
        name = name or f"unnamed_{position}"
        candidate, copy = name, 0
        while candidate in names:
            copy += 1
            candidate = f"{name}.{copy}"
        names.append(candidate)
    return names


def read_jsonl(text: str, path: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """One JSON object per line; blank lines are skipped, anything else unparsable rejected."""
    records, rejected = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            rejected.append((line, f"{path}: line {number}: invalid JSON: {exc.msg} "
                                   f"at column {exc.colno}"))
            continue
        if not isinstance(record, dict):
            rejected.append((line, f"{path}: line {number}: expected a JSON object, got "
                                   f"{type(record).__name__}"))
            continue
        if not record:  # a frame of only `{}` records would have no rows to carry them
            rejected.append((line, f"{path}: line {number}: an empty JSON object, no fields"))
            continue
        records.append(record)
    return pd.DataFrame.from_records(records) if records else pd.DataFrame(), rejected


def read_parquet(fs: fsspec.AbstractFileSystem, path: str, source: FileSource) -> pd.DataFrame:
    import pyarrow as pa

    try:
        with fs.open(path, "rb") as handle:
            return pd.read_parquet(handle)
    except (pa.ArrowException, ValueError) as exc:
        raise SourceError(source.name, f"{path!r} is not a readable Parquet file: {exc}"
                          ) from exc


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames stacked in order; empty ones still contribute their columns."""
    columns = list(dict.fromkeys(column for frame in frames for column in frame.columns))
    full = [frame for frame in frames if len(frame)]
    if not full:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in columns})
    return pd.concat(full, ignore_index=True).reindex(columns=columns)
