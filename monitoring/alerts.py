"""Telling people: one e-mail per owner about their own features that drifted or lost values
(with the HTML report attached), and one to the model's owner when a retrain is due."""
from __future__ import annotations

from collections import defaultdict

from jinja2 import Environment
from tideline.monitoring.mail import Attachment, Mail
from tideline.monitoring.monitor import FeatureCheck, MonitorResult

ATTACH_LIMIT = 15 * 1024**2
"""Larger reports are linked, not attached (mail servers refuse big messages)."""

_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_FEATURES = _ENV.from_string("""\
<p>{{ intro }}</p>
<table border="1" cellpadding="4" cellspacing="0">
<tr><th>feature</th><th>view</th><th>test</th><th>score</th><th>threshold</th><th>effect</th>
<th>missing now</th><th>missing expected</th></tr>
{% for f in features %}
<tr><td>{{ f.column }}</td><td>{{ f.view }}</td><td>{{ f.drift.method }}</td>
<td>{{ "%.4f"|format(f.drift.score) }}{% if f.drift.drifted %} (drift){% endif %}</td>
<td>{{ f.drift.threshold }}</td><td>{{ "%.4f"|format(f.drift.effect) }}</td>
<td>{{ "%.1f%%"|format(100 * f.nulls.current) }}</td>
<td>{% if f.nulls.expected is not none %}{{ "%.1f%%"|format(100 * f.nulls.expected) }}{% endif %}
{% if f.nulls.shifted %} (changed){% endif %}</td></tr>
{% endfor %}
</table>
<p>Report: <a href="{{ link }}">{{ link }}</a>{% if attached %} (attached){% endif %}</p>
""")
_MODEL = _ENV.from_string("""\
<p>{{ intro }}</p>
<ul>{% for reason in reasons %}<li>{{ reason }}</li>{% endfor %}</ul>
<p>Report: <a href="{{ link }}">{{ link }}</a>{% if attached %} (attached){% endif %}</p>
""")


def _line(f: FeatureCheck) -> str:
    what = []
    if f.drift.drifted:
        what.append(f"{f.drift.method} {f.drift.score:.4f} (threshold {f.drift.threshold})")
    if f.nulls.shifted:
        expected = "?" if f.nulls.expected is None else f"{f.nulls.expected:.1%}"
        what.append(f"missing {f.nulls.current:.1%} (expected {expected})")
    return f"- {f.column} ({f.view}): {'; '.join(what)}"


def owner_mails(result: MonitorResult, link: str, report: bytes | None) -> list[Mail]:
    """One message per feature owner about the features they own that alerted, and one to the
    model's owner when a retrain is due."""
    attached = report is not None and len(report) <= ATTACH_LIMIT
    attachments = (Attachment("drift-report.html", report),) if attached else ()
    by_owner: dict[str, list[FeatureCheck]] = defaultdict(list)
    for check in result.features:
        if check.alert:
            by_owner[check.owner].append(check)
    mails = []
    for owner, checks in sorted(by_owner.items()):
        intro = (f"{len(checks)} of your features changed in the data {result.model} scores as "
                 f"of {result.as_of} (compared with its training set "
                 f"{result.reference['training_set']}).")
        mails.append(Mail(
            to=(owner,), subject=f"[tideline] drift in {len(checks)} of your features "
                                 f"({result.model}, {result.as_of})",
            text="\n".join([intro, "", *map(_line, checks), "", f"Report: {link}"]),
            html=_FEATURES.render(intro=intro, features=checks, link=link, attached=attached),
            attachments=attachments))
    if result.reasons:
        intro = f"{result.model} needs retraining as of {result.as_of}; a retrain was requested."
        mails.append(Mail(
            to=(result.owner,), subject=f"[tideline] {result.model} needs retraining",
            text="\n".join([intro, "", *(f"- {r}" for r in result.reasons), "",
                            f"Report: {link}"]),
            html=_MODEL.render(intro=intro, reasons=result.reasons, link=link,
                               attached=attached),
            attachments=attachments))
    return mails
