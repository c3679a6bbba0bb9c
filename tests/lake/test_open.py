"""Links to a lake commit people can open: the lakeFS UI's commit page, or the local lake."""
from __future__ import annotations

from pathlib import Path

from tideline.core.settings import load_settings
from tideline.lake.open import commit_link


def test_a_commit_links_to_the_lakefs_ui_or_the_local_lake(tmp_path: Path) -> None:
    lakefs = load_settings(lake_backend="lakefs", lakefs_endpoint="https://lake.example.com/api/v1",
                           lakefs_access_key_id="k", lakefs_secret_access_key="s",
                           lakefs_repository="churn")
    assert commit_link(lakefs, "c0ffee") == (
        "https://lake.example.com/repositories/churn/commits/c0ffee")
    local = load_settings(data_dir=tmp_path / "data")
    assert commit_link(local, "c0ffee") == f"{(tmp_path / 'data' / 'lake').as_uri()}#commit=c0ffee"
