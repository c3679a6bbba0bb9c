"""Drift and data-quality reports, alert rules, events and e-mail."""
