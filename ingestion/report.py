"""The validation report people read: one self-contained HTML page (tables, and plots embedded
as base64 PNG) and a CSV with one row per dataset × rule.

Every string in the page is HTML-escaped (Jinja autoescape), values from the data included; the
page stays small: summaries, a ≤20-row quarantine sample per dataset, no raw data dumps.
Values of PII-tagged columns are shown as digests (`tideline.ingestion.privacy`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from jinja2 import Environment
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tideline.core.plots import figure_png
from tideline.ingestion.privacy import mask_frame
from tideline.ingestion.validation import ValidationResult

SAMPLE_ROWS = 20
"""Quarantined rows shown per dataset."""
PLOT_COLUMNS = 8
"""Numeric columns plotted per dataset."""
PLOT_VALUES = 100_000
"""Values sampled per column for a histogram."""
CELL_WIDTH = 80

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }} · {{ run_id }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.2em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#17692b;font-weight:600} .fail{color:#b00020;font-weight:600}
.muted{color:#777} img{max-width:100%} section{border-top:2px solid #eee;margin-top:2em}
code{background:#f6f6f6;padding:0 3px}
</style></head><body>
<h1>{{ title }}</h1>
<p class="muted">run <code>{{ run_id }}</code> · {{ datasets|length }} dataset(s)</p>
<h2>Summary</h2>
<table><tr><th>dataset</th><th>rows</th><th>clean</th><th>quarantined</th><th>score</th>
<th>gate</th><th>contract</th></tr>
{% for d in datasets %}<tr><td><a href="#ds-{{ loop.index }}">{{ d.name }}</a></td>
<td class="n">{{ "{:,}".format(d.rows) }}</td><td class="n">{{ "{:,}".format(d.clean) }}</td>
<td class="n">{{ "{:,}".format(d.quarantined) }}</td><td class="n">{{ "%.2f"|format(d.score) }}</td>
<td class="{{ 'pass' if d.gate_passed else 'fail' }}">{{ 'pass' if d.gate_passed else 'FAIL' }}</td>
<td><code>{{ d.version }}</code></td></tr>
{% endfor %}</table>
{% for d in datasets %}
<section id="ds-{{ loop.index }}">
<h2>{{ d.name }} <span class="{{ 'pass' if d.gate_passed else 'fail' }}">
{{ 'gate passed' if d.gate_passed else 'gate failed' }}</span></h2>
{% if d.gate_reasons %}<ul>{% for r in d.gate_reasons %}<li>{{ r }}</li>{% endfor %}</ul>{% endif %}
{% if d.warnings %}<ul class="muted">{% for w in d.warnings %}<li>{{ w }}</li>{% endfor %}</ul>
{% endif %}
<h3>Schema</h3>
{% if d.schema %}<table><tr><th>issue</th><th>column</th><th>breaking</th><th>detail</th></tr>
{% for s in d.schema %}<tr><td>{{ s.kind }}</td><td>{{ s.column }}</td>
<td>{{ 'yes' if s.breaking else 'no' }}</td><td>{{ s.detail }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">matches the contract</p>{% endif %}
<h3>Anomalies</h3>
{% if d.anomalies %}<table><tr><th>kind</th><th>column</th><th>detail</th></tr>
{% for a in d.anomalies %}<tr><td>{{ a.kind }}</td><td>{{ a.column or '' }}</td>
<td>{{ a.detail }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">none (volume checks need 3 past runs)</p>{% endif %}
<h3>Rules</h3>
<table><tr><th>rule</th><th>column</th><th>failed rows</th><th>failure rate</th></tr>
{% for r in d.rules %}<tr><td>{{ r.rule }}</td><td>{{ r.column }}</td>
<td class="n">{{ "{:,}".format(r.failed_rows) }}</td>
<td class="n">{{ "%.3f%%"|format(100 * r.failure_rate) }}</td></tr>{% endfor %}</table>
<img alt="failures per rule, {{ d.name }}" src="data:image/png;base64,{{ d.failures_png }}">
{% if d.outliers %}<h3>Outliers (flagged, kept)</h3>
<table><tr><th>column</th><th>method</th><th>flagged</th><th>expected range</th></tr>
{% for o in d.outliers %}<tr><td>{{ o.column }}</td><td>{{ o.method }}</td>
<td class="n">{{ "{:,}".format(o.count) }}</td><td>{{ "%.4g"|format(o.low) }} …
{{ "%.4g"|format(o.high) }}</td></tr>{% endfor %}</table>{% endif %}
{% if d.distributions_png %}<h3>Distributions (clean rows)</h3>
<img alt="distributions, {{ d.name }}" src="data:image/png;base64,{{ d.distributions_png }}">
{% endif %}
<h3>Quarantine sample</h3>
{% if d.sample_rows %}<p class="muted">first {{ d.sample_rows|length }} of
{{ "{:,}".format(d.quarantined) }} quarantined rows</p>
<table><tr>{% for c in d.sample_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in d.sample_rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table>{% else %}<p class="muted">no rows quarantined</p>{% endif %}
</section>
{% endfor %}
</body></html>
"""

_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _failures_png(result: ValidationResult) -> str:
    rules = result.rules
    labels = [f"{r}:{c}" if c else r for r, c in zip(rules["rule"], rules["column"], strict=True)]
    counts = rules["failed_rows"].to_numpy()
    shown = np.flatnonzero(counts > 0)
    figure = Figure(figsize=(6, 0.3 * max(len(shown), 2) + 0.8))
    axes = figure.add_subplot()
    if shown.size:
        axes.barh([labels[i] for i in shown][::-1], counts[shown][::-1], color="#b00020")
        axes.set_xlabel("failed rows")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        axes.text(0.5, 0.5, "no rule failures", ha="center", va="center")
        axes.set_axis_off()
    axes.set_title(f"{result.dataset}: failures per rule", fontsize=10)
    return figure_png(figure)


def _distributions_png(result: ValidationResult) -> str | None:
    clean = result.clean
    numeric = [c for c in clean.columns if pd.api.types.is_numeric_dtype(clean[c].dtype)
               and not pd.api.types.is_bool_dtype(clean[c].dtype)][:PLOT_COLUMNS]
    if not numeric:
        return None
    bounds = {flag.column: (flag.low, flag.high) for flag in result.outliers}
    per_row = min(len(numeric), 4)
    rows = -(-len(numeric) // per_row)
    figure = Figure(figsize=(2.6 * per_row, 2.0 * rows))
    # fixed spacing, the margins cropped when saved: `tight_layout` would draw the figure once
    # more, a third of the report's time
    figure.subplots_adjust(hspace=0.5, wspace=0.35)
    rng = np.random.default_rng(0)
    for i, name in enumerate(numeric):
        axes = figure.add_subplot(rows, per_row, i + 1)
        values = clean[name].to_numpy(dtype="float64", na_value=np.nan)
        values = values[np.isfinite(values)]
        if values.size > PLOT_VALUES:
            values = values[rng.integers(0, values.size, PLOT_VALUES)]
        if values.size:
            axes.hist(values, bins=30, color="#4a7bb7")
        for bound in bounds.get(name, ()):
            axes.axvline(bound, color="#b00020", linestyle="--", linewidth=0.8)
        axes.set_title(str(name), fontsize=9)
        axes.tick_params(labelsize=7)
    return figure_png(figure)


def _cell(value: object) -> str:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def section(name: str, result: ValidationResult) -> dict[str, object]:
    """What the page shows of one dataset, its plots drawn: made as soon as the dataset is
    checked, while others may still be."""
    sample = mask_frame(result.quarantine.head(SAMPLE_ROWS), result.pii)
    front = ["_row", "_rules", "_reason"]
    columns = front + [c for c in sample.columns if c not in front]
    return {
        "name": name,
        "version": result.contract_version,
        "rows": result.rows,
        "clean": result.clean_rows,
        "quarantined": result.quarantined_rows,
        "score": result.score,
        "gate_passed": result.gate_passed,
        "gate_reasons": result.gate_reasons,
        "warnings": result.warnings,
        "schema": result.schema_issues,
        "anomalies": result.anomalies,
        "rules": list(result.rules.itertuples(index=False)),
        "outliers": result.outliers,
        "failures_png": _failures_png(result),
        "distributions_png": _distributions_png(result),
        "sample_columns": [str(c) for c in columns],
        "sample_rows": [[_cell(v) for v in row]
                        for row in sample[columns].astype(object).itertuples(index=False)],
    }


def render_html(results: Mapping[str, ValidationResult], title: str, run_id: str,
                sections: Mapping[str, dict[str, object]] | None = None) -> str:
    """One self-contained HTML page for a run's validation results, keyed by dataset; the
    `sections` of datasets already made (`section`) are used as they are."""
    made = sections or {}
    datasets = [made.get(name) or section(name, result) for name, result in results.items()]
    return _ENV.from_string(_TEMPLATE).render(title=title, run_id=run_id, datasets=datasets)


CSV_COLUMNS = ["dataset", "rule", "column", "failed_rows", "failure_rate", "rows", "score",
               "gate_passed", "contract_version"]


def render_csv(results: Mapping[str, ValidationResult]) -> str:
    """One row per dataset × rule check, with the dataset's score and gate verdict."""
    frames = []
    for name, result in results.items():
        rules = result.rules.copy()
        rules.insert(0, "dataset", name)
        rules["rows"] = result.rows
        rules["score"] = round(result.score, 4)
        rules["gate_passed"] = result.gate_passed
        rules["contract_version"] = result.contract_version
        frames.append(rules)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CSV_COLUMNS)
    return table[CSV_COLUMNS].to_csv(index=False, lineterminator="\n")
