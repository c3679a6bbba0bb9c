"""The benchmarks page quotes what the committed results hold: its generated section is what
`benchmarks/report.py` makes of `benchmarks/results/*.json`."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def report():  # noqa: ANN201 - the benchmarks' report module
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" /
                                                  "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_matches_the_results() -> None:
    module = report()
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert module.rewrite(page) == page, "run `python benchmarks/report.py`"


def test_every_committed_result_file_is_on_the_page() -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    for path in report().committed():
        json.loads(path.read_text())
        assert f"`benchmarks/results/{path.name}`" in page
