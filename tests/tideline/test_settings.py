"""One settings object: environment first, then `tideline.toml`, validated at start."""
from __future__ import annotations

from pathlib import Path

import pytest
from tideline.core.errors import ConfigError
from tideline.core.settings import load_settings


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.lake_backend == "local"
    assert settings.lake_dir == Path(".tideline/lake")


def test_toml_file_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tideline.toml").write_text('data_dir = "from-toml"\nlake_fsync = true\n')
    assert load_settings().data_dir == Path("from-toml")
    monkeypatch.setenv("TIDELINE_DATA_DIR", "from-env")
    settings = load_settings()
    assert settings.data_dir == Path("from-env") and settings.lake_fsync is True


def test_the_feature_memory_budget_reads_as_people_write_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().feature_memory_budget == 8 * 2**30
    assert load_settings().feature_partitions is None  # chosen from the data
    monkeypatch.setenv("TIDELINE_FEATURE_MEMORY_BUDGET", "12GiB")
    assert load_settings().feature_memory_budget == 12 * 2**30
    (tmp_path / "tideline.toml").write_text('feature_memory_budget = "500MB"\n')
    monkeypatch.delenv("TIDELINE_FEATURE_MEMORY_BUDGET")
    assert load_settings().feature_memory_budget == 500 * 10**6


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIDELINE_LAKE_BACKEND", "lakefs")
    monkeypatch.setenv("TIDELINE_LAKEFS_ENDPOINT", "http://127.0.0.1:8000")
    monkeypatch.setenv("TIDELINE_LAKEFS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("TIDELINE_LAKEFS_SECRET_ACCESS_KEY", "very-secret-value")
    settings = load_settings()
    assert "very-secret-value" not in repr(settings) + str(settings.model_dump())
    assert settings.lakefs_secret_access_key.get_secret_value() == "very-secret-value"


@pytest.mark.parametrize(("name", "value", "named"), [
    ("TIDELINE_LAKE_BACKEND", "s3", "lake_backend"),
    ("TIDELINE_LAKE_MAX_READ_BYTES", "lots", "lake_max_read_bytes"),
    ("TIDELINE_FEATURE_MEMORY_BUDGET", "plenty", "feature_memory_budget"),
    ("TIDELINE_FEATURE_PARTITIONS", "0", "feature_partitions"),
])
def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     name: str, value: str, named: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()
