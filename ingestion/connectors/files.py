"""File sources through fsspec: CSV, Parquet and JSON-lines files at a local path, any fsspec
URL, a directory or a glob of them, read incrementally by which file versions were read.

CSV is parsed by Arrow on every core into text columns; a file with rows of the wrong length is
read again record by record with the `csv` module, which places or rejects each such row.

Checkpoint: ``{"files": {path: {"size": n, "mtime": t, "etag": e}}}`` for every file the source
matched when it was pulled; a later pull reads only paths that are new or whose identity
changed (a changed file is read again in full). Files that no longer match drop out.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import lzma
import zipfile
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, BinaryIO

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fsspec.utils import infer_compression, stringify_path
from tideline.core.errors import SourceAbsent, SourceError, SourceUnavailable
from tideline.ingestion.connectors.windows import filter_window
from tideline.ingestion.rawtext import RAW_TEXT, as_raw_text, batches_frame, records_frame
from tideline.ingestion.sources import BATCH_BYTES, FileSource, Pull, Window

log = logging.getLogger(__name__)

_GLOB_CHARS = ("*", "?", "[")
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified", "created")
_ETAG_KEYS = ("ETag", "etag", "md5Hash", "md5", "checksum")
CSV_BLOCK_BYTES = 16 * 2**20
"""CSV parsed per block of this size, one block per thread: larger than Arrow's 1 MiB
default, for less work per row in parsing and in landing's regrouping by day."""
SAMPLE_BYTES = 2**20
"""What `sample_file` reads of a CSV or JSON-lines file: the whole records in its first MiB."""
CSV_FIELD_BYTES = 2**31 - 1
"""The `csv` module's field limit (128 KiB by default): a field Arrow reads, the record by
record reading reads too, rather than failing the file."""


class FileConnector:
    """Reads the files a `FileSource` matches that the checkpoint has not seen in this version,
    as batches of about `batch_bytes` each, read only as landing asks for them."""

    def __init__(self, batch_bytes: int = BATCH_BYTES) -> None:
        self.batch_bytes = batch_bytes

    def pull(
        self, source: FileSource, checkpoint: dict[str, Any] | None, window: Window | None
    ) -> Pull:
        fs, listing = list_files(source)
        identities = {path: file_identity(info) for path, info in listing.items()}
        seen = (checkpoint or {}).get("files", {})
        if window is None:
            todo = [path for path in sorted(identities) if seen.get(path) != identities[path]]
            after = {"files": dict(sorted(identities.items()))}
        else:
            # a backfill re-reads every file and keeps the window's records; unparsable ones
            # have no time, so they belong to no window (the incremental pull quarantined them)
            todo = sorted(identities)
            after = dict(checkpoint or {"files": {}})
        pull = Pull(frame=None, checkpoint=after, typed=source.format == "parquet")
        pull.batches = self._batches(fs, todo, source, window,
                                     pull.rejected if window is None else [])
        return pull

    def _batches(self, fs: fsspec.AbstractFileSystem, todo: list[str], source: FileSource,
                 window: Window | None, rejected: list[tuple[str, str]]
                 ) -> Iterator[pd.DataFrame | pa.Table]:
        rows = 0
        for path in todo:
            for batch in read_file(fs, path, source, rejected, self.batch_bytes):
                if window is not None:
                    frame = batch if isinstance(batch, pd.DataFrame) else as_raw_text(batch)
                    batch = filter_window(frame, source.timestamp_column, window, source.name)
                rows += len(batch)
                yield batch
        log.info("source %s: read %d file(s), %d record(s), %d rejected", source.name,
                 len(todo), rows, len(rejected))

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
            raise SourceAbsent(source.name, f"file not found: {source.url!r}; check `url`")
    except OSError as exc:
        raise SourceUnavailable(source.name, f"cannot list {source.url!r}: {exc}") from exc
    files = {path: info for path, info in listing.items() if info.get("type") != "directory"}
    if not files:
        raise SourceAbsent(source.name, f"no files match {source.url!r}; check `url`")
    return fs, files


def sample_file(fs: fsspec.AbstractFileSystem, path: str, source: FileSource,
                rows: int = 2_000) -> pd.DataFrame:
    """A file's first `rows` records as landing reads them (from its first MiB, or its first
    Parquet batch): what `tideline plan` checks the contract's columns against without
    reading the data."""
    if source.format == "parquet":
        table = next(read_parquet(fs, path, source, BATCH_BYTES))
        return as_raw_text(table.slice(0, rows))
    try:
        with open_records(fs, path) as handle:
            head = handle.read(SAMPLE_BYTES)
    except BROKEN_COMPRESSION as exc:
        raise _broken(source, path, exc) from exc
    except OSError as exc:
        raise SourceUnavailable(source.name, f"cannot read {path!r}: {exc}") from exc
    if len(head) == SAMPLE_BYTES:  # whole records only: a cut one would read as a bad row
        head = head[:head.rfind(b"\n") + 1] or head
    if source.format == "jsonl":
        frame = read_jsonl(decode(head, path, source), path)[0]
    else:
        frame = batches_frame(read_csv(lambda: io.BytesIO(head), path, source, []))
    return frame.iloc[:rows]


def open_records(fs: fsspec.AbstractFileSystem, path: str) -> BinaryIO:
    """A CSV or JSON-lines file's bytes, decompressed as its name says (`.gz`, `.bz2`, `.xz`,
    `.zip` of one member)."""
    return fs.open(path, "rb", compression=infer_compression(path))


BROKEN_COMPRESSION = (gzip.BadGzipFile, EOFError, zlib.error, lzma.LZMAError,
                      zipfile.BadZipFile)
"""What reading a file its name calls compressed raises when it is not, or is cut short."""


def _broken(source: FileSource, path: str, exc: Exception) -> SourceError:
    return SourceError(source.name, f"{path!r} is not a whole {infer_compression(path)} file, "
                       f"as its name says: {exc}")


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
    fs: fsspec.AbstractFileSystem, path: str, source: FileSource,
    rejected: list[tuple[str, str]], batch_bytes: int = BATCH_BYTES,
) -> Iterator[pd.DataFrame | pa.Table]:
    """One file's records in batches; records of it that cannot be parsed go to `rejected`."""
    try:
        if source.format == "parquet":
            yield from read_parquet(fs, path, source, batch_bytes)
        elif source.format == "csv":
            yield from read_csv(lambda: open_records(fs, path), path, source, rejected)
        else:
            with open_records(fs, path) as handle:
                raw = handle.read()
            frame, bad = read_jsonl(decode(raw, path, source), path)
            rejected.extend(bad)
            yield frame
    except FileNotFoundError as exc:
        raise SourceError(source.name, f"file {path!r} vanished while being read") from exc
    except BROKEN_COMPRESSION as exc:
        raise _broken(source, path, exc) from exc
    except OSError as exc:
        raise SourceUnavailable(source.name, f"cannot read {path!r}: {exc}") from exc


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


def read_csv(open_file: Callable[[], BinaryIO], path: str, source: FileSource,
             rejected: list[tuple[str, str]]) -> Iterator[pa.Table | pd.DataFrame]:
    """Every value as the text it is (Arrow-backed `string` columns), empty fields as null, a
    block at a time. Rows with more fields than the header, and a last row the file cuts off
    (no final newline and fields missing, or a quote left open), go to `rejected` with their
    text; short rows elsewhere are padded with nulls.

    Arrow parses the file block by block, and stops at a row whose field count differs from
    the header's: it could only skip such a row, not pad it in place. A file with such rows
    (or one Arrow cannot read at all: empty, not in its encoding) is read again record by
    record with `read_ragged_csv`, in memory, from the first record not yet given."""
    given = 0
    try:
        for table in read_regular_csv(open_file, source):
            given += table.num_rows
            yield table
        return
    except (pa.ArrowInvalid, UnicodeError, LookupError):
        pass
    with open_file() as handle:
        raw = handle.read()
    try:
        frame, bad = read_ragged_csv(decode(raw, path, source), path, source.delimiter)
    except csv.Error as exc:
        raise SourceError(source.name, f"{path!r} is not readable CSV: {exc}") from exc
    rejected.extend(bad)
    if len(frame.columns) and (len(frame) > given or not given):
        yield frame.iloc[given:].reset_index(drop=True)


def read_regular_csv(open_file: Callable[[], BinaryIO], source: FileSource
                     ) -> Iterator[pa.Table]:
    """Blocks of a CSV whose rows all have the header's number of fields, every column as
    text (the header alone when there are no rows); `ArrowInvalid` at the first block with
    any other row."""
    read = pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, encoding=source.encoding)
    parse = pa_csv.ParseOptions(delimiter=source.delimiter, newlines_in_values=True)
    with open_file() as handle:
        names = pa_csv.open_csv(handle, read_options=read, parse_options=parse).schema.names
    convert = pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                    null_values=[""], strings_can_be_null=True)
    unique = column_names(names)
    with open_file() as handle:
        reader = pa_csv.open_csv(handle, read_options=read, parse_options=parse,
                                 convert_options=convert)
        empty = True
        for batch in reader:
            empty = False
            yield pa.Table.from_batches([batch]).rename_columns(unique)
        if empty:
            yield reader.schema.empty_table().rename_columns(unique)


def read_ragged_csv(text: str, path: str, delimiter: str = ","
                    ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """`read_csv` record by record with the `csv` module, for files with rows of the wrong
    length: each is placed (padded) or rejected with its text, file and line."""
    lines = io.StringIO(text, newline="").readlines()
    csv.field_size_limit(CSV_FIELD_BYTES)
    reader = csv.reader(lines, delimiter=delimiter)
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
    return records_frame(records), rejected


def read_parquet(fs: fsspec.AbstractFileSystem, path: str, source: FileSource,
                 batch_bytes: int) -> Iterator[pa.Table]:
    """A Parquet file's rows in its own types, in batches of about a quarter of `batch_bytes`
    (landing holds a batch and the rows waiting for their day's row group); an index pandas
    wrote beside the columns is left out."""
    try:
        with fs.open(path, "rb") as handle:
            # pre_buffer keeps every row group read so far in memory: the whole file, by the end
            parquet = pq.ParquetFile(handle, pre_buffer=False)
            meta = parquet.metadata
            size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            rows = min(max(batch_bytes // 4 // max(size // max(meta.num_rows, 1), 1), 4_096),
                       4_000_000)
            columns = [name for name in parquet.schema_arrow.names
                       if not name.startswith("__index_level_")]
            if not meta.num_rows:
                yield parquet.schema_arrow.empty_table().select(columns)
            for batch in parquet.iter_batches(batch_size=rows, columns=columns):
                yield pa.Table.from_batches([batch])
    except (pa.ArrowException, ValueError) as exc:
        raise SourceError(source.name, f"{path!r} is not a readable Parquet file: {exc}"
                          ) from exc
