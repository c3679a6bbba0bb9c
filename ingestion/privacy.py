"""How values of PII-tagged columns (`Column.pii`) are shown to people: as a short digest,
`‹email:3f2a9c1e›`, in reasons, reports, logs, e-mails and artifacts. The lake's tables keep the
values themselves; masking happens where values leave it.

The digest is the first 8 hex digits of the SHA-256 of the value's text, labelled with the
column's kind: equal values show equal digests (rows can be matched up, counted, followed from
run to run) and the value cannot be read back. It does not stop someone who already has a
candidate value from confirming it by hashing it; treat reports as internal. The e-mail domain
is not kept: a quarantined address is malformed by definition (where its domain starts is a
guess that can show the whole value), and a private domain names a person.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DIGEST_HEX = 8
"""Hex digits of the digest: 32 bits, so values in a sample of thousands rarely share one."""


def mask_value(value: object, kind: str) -> str:
    """`‹kind:digest›` for a value (its text), or the empty string for a missing one."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    digest = hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()
    return f"‹{kind}:{digest[:DIGEST_HEX]}›"


def mask_text(text: pa.Array, kind: str) -> pa.Array:
    """Arrow text values masked (each distinct value hashed once); nulls stay null."""
    encoded = pc.dictionary_encode(text)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    masked = pa.array([mask_value(v, kind) for v in encoded.dictionary.to_pylist()],
                      type=text.type)
    return masked.take(encoded.indices)


def mask_frame(frame: pd.DataFrame, private: Mapping[str, str]) -> pd.DataFrame:
    """A copy of `frame` with the columns named in `private` (column -> kind) masked value by
    value; other columns as they are."""
    shown = [name for name in frame.columns if name in private]
    if not shown:
        return frame
    masked = frame.copy()
    for name in shown:
        kind = private[name]
        masked[name] = masked[name].astype(object).map(
            lambda v, kind=kind: mask_value(v, kind) or None)
    return masked
