"""A project as a user starts one: `tideline init`, `plan` on it (and on a broken copy), the
one line every command gives without a project, and the JSON Schema editors validate with."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from tideline.deployments.project import SCHEMA_FILE, ProjectFile, schema_text

from tests.waiting import CLI, ROOT


def tideline(*args: str, cwd: Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.fixture
def own_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a user without the suite's demo project."""
    import os

    monkeypatch.delenv("TIDELINE_PROJECT", raising=False)
    return {k: v for k, v in os.environ.items() if k != "TIDELINE_PROJECT"}


def test_without_a_project_every_command_says_so_in_one_line(
        tmp_path: Path, own_env: dict[str, str]) -> None:
    for command in (["run"], ["ingest"], ["features", "list"], ["lake", "log"], ["plan"],
                    ["models", "list"]):
        done = tideline(*command, cwd=tmp_path, env=own_env)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "no tideline project" in lines[0] and "tideline init DIR" in lines[0]
        assert "tideline demo" in lines[0]
    assert not (tmp_path / ".tideline").exists()  # nothing was generated or written
    assert tideline("run", "--help", cwd=tmp_path, env=own_env).returncode == 0
    assert tideline("--version", cwd=tmp_path, env=own_env).stdout.startswith("tideline 0.")


def test_init_writes_a_project_that_plans(tmp_path: Path, own_env: dict[str, str]) -> None:
    done = tideline("init", "shop", cwd=tmp_path, env=own_env)
    assert done.returncode == 0, done.stderr
    shop = tmp_path / "shop"
    assert {p.name for p in shop.iterdir()} == {"tideline.yaml", "prefect.yaml", "README.md",
                                                "data", "tideline.schema.json"}
    body = yaml.safe_load((shop / "tideline.yaml").read_text())
    assert body["name"] == "shop"
    ProjectFile.model_validate(body)
    assert "tideline plan" in (shop / "README.md").read_text()
    assert tideline("init", "shop", cwd=tmp_path, env=own_env).returncode == 1  # not empty

    planned = tideline("plan", "--format", "json", cwd=shop, env=own_env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["errors"] == [] and plan["added"] == ["payment_behaviour"]
    assert plan["sources"] == ["payments-export"] and plan["model"].startswith("payment_churn")
    # from elsewhere, through --project: the same project, its paths its own
    again = tideline("--project", str(shop), "plan", "--format", "json", cwd=tmp_path,
                     env=own_env)
    assert json.loads(again.stdout)["views"] == plan["views"]


def _tag_and_use(body: dict, column: str, agg: str) -> None:
    """Tag `column` as personal data and aggregate it with `agg` in a new feature `odd`."""
    for spec in body["contracts"][0]["columns"]:
        if spec["name"] == column:
            spec["pii"] = "free_text"
    body["features"]["views"][0]["features"].append({"name": "odd", "column": column,
                                                     "agg": agg})


@pytest.mark.parametrize(("edit", "named"), [
    (lambda b: b["features"]["views"][0]["features"].append(
        {"name": "odd", "column": "amount", "agg": "sum"}), "feature 'odd': unknown column "
                                                            "'amount'"),
    (lambda b: b["features"]["views"][0]["features"].append(
        {"name": "odd", "column": "client", "agg": "mean"}), "'mean' needs a numeric column"),
    (lambda b: b["features"]["views"][0].update(owner="nobody"), "owner"),
    (lambda b: b["features"]["sources"][0].update(dataset="refunds"),
     "dataset 'refunds', which no contract declares"),
    (lambda b: b["model"]["label"].update(activity=["clicks"]), "label activity"),
    (lambda b: b["model"].update(features=["payment_behaviour:spend_7d"]),
     "feature 'payment_behaviour:spend_7d' is not declared"),
    (lambda b: b["model"]["label"].update(entity_key="customer"), "entity_key 'customer'"),
    (lambda b: b["contracts"][0]["columns"][1].update(type="text"), "type"),
    (lambda b: _tag_and_use(b, "payment_id", "last"), "feature view 'payment_behaviour', "
     "feature 'odd': column 'payment_id' of dataset 'payments' is tagged pii (free_text)"),
])
def test_plan_names_what_is_wrong_and_fails(tmp_path: Path, own_env: dict[str, str], edit,
                                            named: str) -> None:
    tideline("init", "shop", cwd=tmp_path, env=own_env)
    path = tmp_path / "shop" / "tideline.yaml"
    body = yaml.safe_load(path.read_text())
    edit(body)
    path.write_text(yaml.safe_dump(body))
    done = tideline("plan", cwd=path.parent, env=own_env)
    assert done.returncode == 1
    assert named in " ".join(done.stdout.split()), done.stdout


def test_the_shipped_schema_is_the_generated_one_and_fits_every_project() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), "run `tideline schema > " \
                                                    "deployments/tideline.schema.json`"
    schema = json.loads(schema_text())
    assert set(schema["properties"]) == {"name", "demo", "sources", "contracts",
                                         "validation_time", "features", "model", "settings",
                                         "profiles"}
    settings = schema["$defs"]["Settings"]["properties"]
    assert "redis_url" in settings and "project" not in settings
    assert settings["data_dir"]["description"].startswith("Where embedded state lives")
    for path in (ROOT / "demo" / "tideline.yaml",
                 ROOT / "docs" / "examples" / "own-subscriptions" / "tideline.yaml",
                 ROOT / "docs" / "examples" / "custom-views" / "tideline.yaml",
                 ROOT / "deployments" / "template" / "tideline.yaml"):
        ProjectFile.model_validate(yaml.safe_load(path.read_text()))


def test_serve_predicts_with_the_projects_model_or_says_there_is_none(
        tmp_path: Path, own_env: dict[str, str]) -> None:
    from tideline.core.settings import load_settings
    from tideline.deployments.cli.ops import served_model
    from tideline.features.definitions import load_definitions

    assert tideline("init", "shop", cwd=tmp_path, env=own_env).returncode == 0
    project = tmp_path / "shop" / "tideline.yaml"
    body = yaml.safe_load(project.read_text())
    views = load_definitions(str(project))
    assert served_model(load_settings(project=project), views) == body["model"]["name"]
    assert body["model"]["name"] != "churn"  # the demo's
    del body["model"]
    project.write_text(yaml.safe_dump(body))
    assert served_model(load_settings(project=project), views) is None


def test_stream_reads_the_projects_stream_source_unless_told(
        tmp_path: Path, own_env: dict[str, str]) -> None:
    from tideline.core.errors import ConfigError
    from tideline.core.settings import load_settings
    from tideline.demo.project import PROJECT_FILE, declared_project
    from tideline.deployments.cli.ops import stream_defaults

    demo = load_settings(project=PROJECT_FILE)
    assert stream_defaults(demo, declared_project(demo), None, None) == ("app-events", "events")
    assert tideline("init", "shop", cwd=tmp_path, env=own_env).returncode == 0
    shop = load_settings(project=tmp_path / "shop" / "tideline.yaml")
    with pytest.raises(ConfigError, match="declares 0 stream sources; give --subject"):
        stream_defaults(shop, declared_project(shop), None, "payments")
    assert stream_defaults(shop, declared_project(shop), "pay", "payments") == ("pay",
                                                                               "payments")


def test_plan_reads_each_file_sources_first_records(tmp_path: Path, own_env: dict[str, str]
                                                    ) -> None:
    """A delimiter, a decimal mark or a time format the contract does not say shows at `plan`,
    with the field that says it, from the first file's first records; so does a column the
    file lacks. A source whose files are not there yet is left to the run."""
    import pandas as pd
    from tideline.core.settings import load_settings
    from tideline.deployments.project import plan_project

    assert tideline("init", "shop", cwd=tmp_path, env=own_env).returncode == 0
    project = tmp_path / "shop" / "tideline.yaml"
    data = tmp_path / "shop" / "data" / "payments-2026-09.csv"
    frame = pd.read_csv(data, dtype=str)
    frame["value"] = frame["value"].str.replace(".", ",")
    frame["paid_at"] = (pd.to_datetime(frame["paid_at"]).astype("int64") // 10**6).astype(str)
    frame.to_csv(data, sep=";", index=False)
    body = yaml.safe_load(project.read_text())
    source, columns = body["sources"][0], body["contracts"][0]["columns"]

    def errors() -> list[str]:
        project.write_text(yaml.safe_dump(body))
        return plan_project(load_settings(project=project)).errors

    done = tideline("plan", cwd=project.parent, env=own_env)
    assert done.returncode == 1
    said = " ".join(done.stdout.split())
    assert f"{data}: schema break: the input has one column 'payment_id;client;paid_at;value'" \
           in said and 'reads them with `delimiter: ";"`' in said
    source["delimiter"] = ";"
    assert errors() == [
        f"source 'payments-export': {data}: column 'paid_at': 2000 of 2000 values read are not "
        f"timestamp (e.g. '{frame['paid_at'][0]}'); for epoch numbers, declare `format: "
        "unix_ms` (or unix_s, unix_ms, unix_us, unix_ns)",
        f"source 'payments-export': {data}: column 'value': 2000 of 2000 values read are not "
        f"float (e.g. '{frame['value'][0]}'); with a decimal comma, declare `decimal: \",\"` on "
        "the column"]
    columns[2]["format"], columns[3]["decimal"] = "unix_ms", ","
    assert errors() == []
    project.write_text(yaml.safe_dump(body))
    assert "the contract's columns are there (2,000 records read)" in " ".join(
        tideline("plan", cwd=project.parent, env=own_env).stdout.split())

    frame.drop(columns="value").to_parquet(data.with_suffix(".parquet"))
    source.update(url="data/*.parquet", format="parquet")
    assert errors() == [f"source 'payments-export': {data.with_suffix('.parquet')}: schema "
                        "break: required column 'value' is missing from the input"]
    source["url"] = "incoming/*.csv"
    project.write_text(yaml.safe_dump(body))
    plan = plan_project(load_settings(project=project))
    assert plan.errors == [] and plan.sources_read == [
        f"payments-export: nothing to read yet: no files match '{project.parent}/incoming/*.csv'"
        "; check `url`"]


def test_the_demo_project_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tideline plan` in the directory `tideline demo` made: its placeholders filled as a run
    fills them, its files looked for where a run generates them."""
    from tideline.core.settings import load_settings
    from tideline.deployments.project import plan_project

    monkeypatch.delenv("TIDELINE_DEMO_SQL_URL", raising=False)  # set by a demo run earlier

    plan = plan_project(load_settings(project=ROOT / "demo" / "tideline.yaml",
                                      data_dir=tmp_path))
    assert plan.errors == [] and plan.model is not None and plan.model.startswith("churn")
    assert plan.sources_read == [
        f"crm-customers: nothing to read yet: no files match "
        f"'{tmp_path.resolve()}/demo/crm/customers-*.csv'; check `url`",
        "shop-transactions: nothing to read yet: environment variable TIDELINE_DEMO_SQL_URL "
        "is not set; it must hold the database's SQLAlchemy URL"]


def test_plan_reads_a_sql_sources_first_rows(tmp_path: Path, own_env: dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQL source's table is read as a pull reads it, its first 2,000 rows only; without its
    URL in the environment it is left to the run, and a table that is not there is an error
    naming it."""
    import sqlite3

    import pandas as pd
    from tideline.core.settings import load_settings
    from tideline.deployments.project import plan_project

    assert tideline("init", "shop", cwd=tmp_path, env=own_env).returncode == 0
    project = tmp_path / "shop" / "tideline.yaml"
    frame = pd.read_csv(tmp_path / "shop" / "data" / "payments-2026-09.csv")
    frame["paid_at"] = pd.to_datetime(frame["paid_at"]).astype("int64") // 10**6
    with sqlite3.connect(tmp_path / "shop.db") as db:
        frame.to_sql("payments", db, index=False)
    body = yaml.safe_load(project.read_text())
    body["sources"] = [{"name": "shop", "kind": "sql", "dataset": "payments",
                        "url_env": "SHOP_DB", "table": "payments", "cursor_column": "paid_at",
                        "timestamp_column": "paid_at"}]

    def plan():  # noqa: ANN202
        project.write_text(yaml.safe_dump(body))
        return plan_project(load_settings(project=project))

    monkeypatch.delenv("SHOP_DB", raising=False)
    assert plan().errors == [] and plan().sources_read == [
        "shop: nothing to read yet: environment variable SHOP_DB is not set; it must hold the "
        "database's SQLAlchemy URL"]
    monkeypatch.setenv("SHOP_DB", f"sqlite:///{tmp_path / 'shop.db'}")
    found = plan()
    assert found.errors == [
        f"source 'shop': sqlite:{tmp_path / 'shop.db'}: column 'paid_at': 2000 of 2000 values "
        f"read are not timestamp (e.g. {frame['paid_at'][0]}); for epoch numbers, declare "
        "`format: unix_ms` (or unix_s, unix_ms, unix_us, unix_ns)"]
    body["contracts"][0]["columns"][2]["format"] = "unix_ms"
    found = plan()
    assert found.errors == [] and found.sources_read == [
        f"shop: sqlite:{tmp_path / 'shop.db'}: the contract's columns are there (2,000 records "
        "read)"]
    body["sources"][0]["table"] = "refunds"
    assert plan().errors[0].startswith(f"source 'shop': reading table 'refunds' from "
                                       f"sqlite:{tmp_path / 'shop.db'} failed: ")
