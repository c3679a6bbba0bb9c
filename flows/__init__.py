"""Prefect flows: orchestration only, each reading like the architecture picture."""
