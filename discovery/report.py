"""The selection report: one self-contained HTML page (what was generated, why each candidate
was kept or dropped, importance and correlation plots) and a CSV of every decision. Every
string is HTML-escaped (Jinja autoescape)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from jinja2 import Environment
from matplotlib.figure import Figure
from tideline.core.plots import figure_png
from tideline.discovery.generate import Candidate
from tideline.discovery.select import Selection

SHOWN_DROPPED = 200
"""Dropped candidates listed in the page (all are in the CSV)."""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Feature discovery · {{ run_id }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.2em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#777} img{max-width:100%} section{border-top:2px solid #eee;margin-top:2em}
td code{word-break:break-all;font-size:12px} td:nth-child(3){min-width:18em}
</style></head><body>
<h1>Feature discovery <code>{{ run_id }}</code></h1>
<p>{{ generated }} candidates generated from {{ tables }} at lake commit
<code>{{ commit[:12] }}</code>{% if over_budget %} ({{ over_budget }} more left out by the
budget){% endif %}; {{ computed }} computed for {{ rows }} labelled examples;
<b>{{ kept|length }} kept</b>. Judged on the training split only: training dates
{{ dates.train|join(", ") }}, validation {{ dates.valid|join(", ") }} (the test dates
{{ dates.test|join(", ") }} were not looked at).</p>
<img alt="why candidates were dropped" src="data:image/png;base64,{{ funnel_png }}">
<section><h2>Kept</h2>
<table><tr><th>#</th><th>feature</th><th>description</th><th>family</th>
<th>mutual information</th><th>ROC-AUC alone</th><th>stability</th><th>LightGBM gain</th>
<th>permutation ΔAUC</th><th>stands for</th></tr>
{% for row in kept %}<tr><td class="n">{{ loop.index }}</td>
<td><code>{{ row.candidate }}</code></td><td>{{ row.description }}</td><td>{{ row.family }}</td>
<td class="n">{{ "%.4f"|format(row.mutual_information) }}</td>
<td class="n">{{ "%.3f"|format(row.auc_alone) }}</td>
<td class="n">{{ "%.0f%%"|format(100 * row.stability) }}</td>
<td class="n">{{ "%.1f"|format(row.gain) }}</td>
<td class="n">{{ "%.4f"|format(row.permutation) }}</td>
<td class="muted">{{ clusters.get(row.candidate, [])|join(", ") }}</td></tr>
{% endfor %}</table>
{% if importance_png %}
<img alt="permutation importance" src="data:image/png;base64,{{ importance_png }}">
{% endif %}
{% if correlation_png %}
<img alt="correlations of the kept features" src="data:image/png;base64,{{ correlation_png }}">
{% endif %}
</section>
<section><h2>Dropped</h2>
<table><tr><th>feature</th><th>family</th><th>reason</th></tr>
{% for row in dropped %}<tr><td><code>{{ row.candidate }}</code></td>
<td>{{ row.family }}</td><td>{{ row.reason }}</td></tr>
{% endfor %}</table>
{% if more_dropped %}<p class="muted">… and {{ more_dropped }} more in the CSV.</p>{% endif %}
</section>
<p class="muted">Selected views: {{ views|join(", ") }}. Every decision: decisions.csv.</p>
</body></html>
"""
_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _funnel_png(decisions: pd.DataFrame) -> str:
    counts = decisions["step"].value_counts()
    labels = ["kept", *(step for step in counts.index if step != "kept")]
    values = [int(counts.get(label, 0)) for label in labels]
    figure = Figure(figsize=(7, 0.35 * len(labels) + 1))
    axes = figure.add_subplot()
    axes.barh(labels[::-1], values[::-1], color=["#b0b0b0"] * (len(values) - 1) + ["#17692b"])
    for y, value in enumerate(values[::-1]):
        axes.text(value, y, f" {value}", va="center", fontsize=8)
    axes.set_title("candidates: kept, and the step that dropped the others", fontsize=10)
    return figure_png(figure)


def _importance_png(kept: pd.DataFrame) -> str | None:
    if kept.empty:
        return None
    figure = Figure(figsize=(7, 0.3 * len(kept) + 1))
    axes = figure.add_subplot()
    axes.barh(kept["candidate"][::-1], kept["permutation"][::-1], color="#1f5fa8")
    axes.set_xlabel("validation ROC-AUC lost when shuffled")
    axes.tick_params(axis="y", labelsize=7)
    axes.set_title("permutation importance of the kept features", fontsize=10)
    return figure_png(figure)


def _correlation_png(correlations: pd.DataFrame | None, kept: list[str]) -> str | None:
    if correlations is None or len(kept) < 2:
        return None
    matrix = correlations.loc[kept, kept].to_numpy()
    figure = Figure(figsize=(0.25 * len(kept) + 3, 0.25 * len(kept) + 2.5))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
    axes.set_xticks(np.arange(len(kept)), kept, rotation=90, fontsize=6)
    axes.set_yticks(np.arange(len(kept)), kept, fontsize=6)
    figure.colorbar(image, ax=axes, shrink=0.7, label="rank correlation")
    axes.set_title("rank correlations of the kept features", fontsize=10)
    return figure_png(figure)


@dataclass(frozen=True)
class Report:
    html: str
    csv: str


def selection_report(run_id: str, commit: str, selection: Selection,
                     candidates: dict[str, Candidate], computed: int, rows: int,
                     over_budget: int, views: list[str],
                     correlations: pd.DataFrame | None) -> Report:
    decisions = selection.decisions.assign(
        family=lambda d: d["candidate"].map(lambda n: candidates[n].family),
        source=lambda d: d["candidate"].map(lambda n: candidates[n].source),
        description=lambda d: d["candidate"].map(lambda n: candidates[n].description))
    kept = decisions[decisions["status"] == "kept"]
    dropped = decisions[decisions["status"] == "dropped"]
    html = _ENV.from_string(_TEMPLATE).render(
        run_id=run_id, commit=commit, generated=len(candidates), over_budget=over_budget,
        tables=", ".join(sorted({c.source for c in candidates.values()})), computed=computed,
        rows=f"{rows:,}", kept=kept.to_dict("records"), dates=selection.dates,
        clusters=selection.clusters, dropped=dropped.head(SHOWN_DROPPED).to_dict("records"),
        more_dropped=max(0, len(dropped) - SHOWN_DROPPED), views=views,
        funnel_png=_funnel_png(decisions), importance_png=_importance_png(kept),
        correlation_png=_correlation_png(correlations, selection.kept))
    columns = ["candidate", "status", "step", "reason", "source", "family", "description",
               "null_share", "mutual_information", "auc_alone", "stability", "cluster", "gain",
               "permutation"]
    return Report(html=html, csv=decisions.reindex(columns=columns).to_csv(index=False))
