"""The reliability suite's ledger: every test records the faults it injected, the hostile inputs
it tried and the rows it found lost, and the session ends with the totals (issue 11 asks for
them; rows lost must be 0)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class Ledger:
    faults: int = 0
    hostile: int = 0
    lost: int = 0

    def fault(self, n: int = 1) -> None:
        """`n` faults injected (a kill, a restarted service, a corrupted object, a full disk)."""
        self.faults += n

    def hostile_input(self, n: int = 1) -> None:
        """`n` hostile inputs tried (fuzzed bytes, a malicious name, a bad request)."""
        self.hostile += n

    def rows_lost(self, n: int) -> None:
        """Rows that went in and came out neither published nor quarantined."""
        self.lost += n


LEDGER = Ledger()


@pytest.fixture
def ledger() -> Ledger:
    return LEDGER


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LEDGER.faults or LEDGER.hostile or LEDGER.lost:
        terminalreporter.write_line(
            f"reliability: {LEDGER.faults} faults injected, {LEDGER.hostile} hostile inputs "
            f"tried, {LEDGER.lost} rows lost")
