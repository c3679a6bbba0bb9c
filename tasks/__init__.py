"""Prefect tasks: thin wrappers that set names, retries and caching around domain functions."""
