"""The reliability suite's ledger: the faults each test injected, the hostile inputs it saw
refused (by the error that refused them), the valid inputs it saw served, the fuzzed inputs it
tried, and the rows it reconciled; the session ends with the totals (issues 11 and 32)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass(frozen=True)
class Reconciliation:
    what: str
    rows_in: int
    rows_out: int


@dataclass
class Ledger:
    faults: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    fuzzed: Counter[str] = field(default_factory=Counter)
    reconciled: list[Reconciliation] = field(default_factory=list)

    def fault(self, n: int = 1) -> None:
        """`n` faults injected (a kill, a restarted service, a corrupted object, a full disk)."""
        self.faults += n

    def refused(self, error: str, n: int = 1) -> None:
        """`n` hostile inputs, meant to be refused, that the test checked were refused with
        `error` (an exception class, or an HTTP status and error type)."""
        self.refusals[error] += n

    def serve(self, what: str, n: int = 1) -> None:
        """`n` valid inputs (`what` they were) that the test checked were answered."""
        self.served[what] += n

    def fuzz(self, outcome: str, n: int = 1) -> None:
        """`n` generated inputs that may be refused or accepted, by what became of them."""
        self.fuzzed[outcome] += n

    def reconcile(self, what: str, rows_in: int, rows_out: int) -> int:
        """Rows that went in against rows accounted for at the end (landed clean, quarantined
        or rejected, as the test counts them): recorded and printed at once, so that a test
        its assertions then fail still shows the number. Returns the rows lost (negative for
        rows gained)."""
        self.reconciled.append(Reconciliation(what, rows_in, rows_out))
        print(f"{what}: {rows_in:,} rows in, {rows_out:,} out, {rows_in - rows_out:,} lost")
        return rows_in - rows_out


def http_error(response: Any) -> str:
    """An HTTP refusal's name: its status, and the error type of a validation error."""
    detail = response.json().get("detail")
    if isinstance(detail, list) and detail and "type" in detail[0]:
        return f"HTTP {response.status_code} {detail[0]['type']}"
    return f"HTTP {response.status_code}"


LEDGER = Ledger()


@pytest.fixture
def ledger() -> Ledger:
    return LEDGER


def _counted(counts: Counter[str]) -> str:
    """The total, then each kind, most first."""
    kinds = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return f"{counts.total():,}" + (f" ({', '.join(f'{k} {n:,}' for k, n in kinds)})"
                                    if kinds else "")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ledger = LEDGER
    if not (ledger.faults or ledger.refusals or ledger.served or ledger.fuzzed
            or ledger.reconciled):
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("-", "reliability ledger")
    write(f"faults injected: {ledger.faults:,}")
    write(f"hostile inputs refused: {_counted(ledger.refusals)}")
    write(f"valid inputs served: {_counted(ledger.served)}")
    write(f"fuzzed inputs: {_counted(ledger.fuzzed)}")
    rows_in = sum(r.rows_in for r in ledger.reconciled)
    rows_out = sum(r.rows_out for r in ledger.reconciled)
    lost = sum(max(r.rows_in - r.rows_out, 0) for r in ledger.reconciled)
    gained = sum(max(r.rows_out - r.rows_in, 0) for r in ledger.reconciled)
    write(f"rows reconciled: {rows_in:,} in, {rows_out:,} out over {len(ledger.reconciled):,} "
          f"reconciliations; {lost:,} rows lost, {gained:,} gained")
    for r in ledger.reconciled:
        if r.rows_in != r.rows_out:
            write(f"  {r.what}: {r.rows_in:,} in, {r.rows_out:,} out")
