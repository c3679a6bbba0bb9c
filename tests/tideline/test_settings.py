"""One settings object: the environment first, then the project file's chosen profile and its
`settings`, validated at start."""
from __future__ import annotations

from pathlib import Path

import pytest
from tideline.core.errors import ConfigError
from tideline.core.project import NoProject
from tideline.core.settings import load_settings


@pytest.fixture(autouse=True)
def _no_suite_project(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test here from an empty directory, without the suite's demo project."""
    monkeypatch.delenv("TIDELINE_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_embedded() -> None:
    settings = load_settings()
    assert settings.lake_backend == "local" and settings.project is None
    assert settings.lake_dir == Path(".tideline/lake")
    with pytest.raises(NoProject, match="tideline init DIR.*tideline demo"):
        settings.declared("features")


PROJECT = """
settings:
  data_dir: state
  lake_fsync: true
  mail_from: ${TEAM_SENDER:-team@example.com}
profiles:
  prod:
    lake_backend: lakefs
    lakefs_endpoint: http://lakefs.internal:8000
    lakefs_access_key_id: ${LAKEFS_KEY}
    lakefs_secret_access_key: ${LAKEFS_SECRET}
"""


def test_the_project_file_its_profile_and_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "tideline.yaml").write_text(PROJECT)
    with pytest.raises(NoProject):  # not in the working directory
        load_settings().declared("sources")
    monkeypatch.chdir(tmp_path / "proj")
    settings = load_settings()
    assert settings.project == tmp_path / "proj" / "tideline.yaml"
    assert settings.data_dir == tmp_path / "proj" / "state"  # beside the file, from anywhere
    assert settings.lake_fsync is True and settings.lake_backend == "local"
    assert settings.mail_from == "team@example.com"
    assert settings.declared("features") == str(settings.project)

    monkeypatch.setenv("TIDELINE_DATA_DIR", "from-env")
    monkeypatch.setenv("TEAM_SENDER", "sender@example.com")
    settings = load_settings()
    assert settings.data_dir == Path("from-env") and settings.mail_from == "sender@example.com"

    # the prod profile names variables this machine does not set: only choosing it reads them
    with pytest.raises(ConfigError, match="settings.lakefs_access_key_id.*LAKEFS_KEY"):
        load_settings(profile="prod")
    monkeypatch.setenv("LAKEFS_KEY", "AKIAEXAMPLE")
    monkeypatch.setenv("LAKEFS_SECRET", "very-secret-value")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIDELINE_PROJECT", str(tmp_path / "proj"))  # a directory will do
    monkeypatch.setenv("TIDELINE_PROFILE", "prod")
    settings = load_settings()
    assert settings.lake_backend == "lakefs" and settings.lake_fsync is True
    assert settings.lakefs_secret_access_key.get_secret_value() == "very-secret-value"
    assert "very-secret-value" not in repr(settings)
    with pytest.raises(ConfigError, match="no profile 'staging'; profiles: prod"):
        load_settings(profile="staging")


def test_overrides_keep_working_without_a_project() -> None:
    settings = load_settings(feature_views="tideline.demo.views:DEMO_VIEWS")
    assert settings.declared("features") == "tideline.demo.views:DEMO_VIEWS"
    with pytest.raises(NoProject):
        settings.declared("model")


@pytest.mark.parametrize(("text", "named"), [
    ("settings: {lake_backend: s3}\n", "lake_backend"),
    ("settings: {no_such_setting: 1}\n", "no_such_setting"),
    ("sourcez: []\n", "unknown section.*sourcez"),
    ("settings: {project: other.yaml}\n", "`project` is not a setting"),
])
def test_a_bad_project_file_names_what_is_wrong(tmp_path: Path, text: str, named: str) -> None:
    (tmp_path / "tideline.yaml").write_text(text)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_the_feature_memory_budget_reads_as_people_write_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_settings().feature_memory_budget == 8 * 2**30
    assert load_settings().feature_partitions is None  # chosen from the data
    monkeypatch.setenv("TIDELINE_FEATURE_MEMORY_BUDGET", "12GiB")
    assert load_settings().feature_memory_budget == 12 * 2**30
    (tmp_path / "tideline.yaml").write_text('settings: {feature_memory_budget: 500MB}\n')
    monkeypatch.delenv("TIDELINE_FEATURE_MEMORY_BUDGET")
    assert load_settings().feature_memory_budget == 500 * 10**6


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
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
def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                     named: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()
