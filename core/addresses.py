"""E-mail addresses tideline writes to: owners of views and models, the pipeline's owner, the
sender. One rule everywhere, checked where an address is declared and again before sending."""
from __future__ import annotations

import re

_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def valid_address(text: str | None) -> bool:
    """A bare `local@domain` address: no display name, spaces, line breaks or second address
    (nothing that could add a header to a message)."""
    return isinstance(text, str) and _ADDRESS.fullmatch(text) is not None
