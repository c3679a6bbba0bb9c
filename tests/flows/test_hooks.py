"""A failed flow tells the pipeline owner what failed, where, why and how to resume."""
from __future__ import annotations

import email
import logging
from email import policy
from pathlib import Path

import pytest
from prefect import flow, task
from tideline.core.errors import ConfigError, ModelError
from tideline.flows.hooks import RUN_LOGGERS
from tideline.flows.train import train


def test_a_failed_flow_mails_its_owner(prefect_server: None, data_dir: Path) -> None:
    with pytest.raises(ModelError, match="cannot load model spec 'tideline.models.nope:MODEL'"):
        train(run_id="f1", model="tideline.models.nope:MODEL")
    (path,) = (data_dir / "outbox").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == "data-platform@example.com"
    assert message["Subject"].startswith("[tideline] train run ") and message[
        "Subject"].endswith(" failed")
    text = message.get_body(("plain",)).get_content()
    assert "cannot load model spec 'tideline.models.nope:MODEL'" in text
    assert "re-run with the same run id (f1)" in text


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize(("error", "traced"), [(ConfigError("set `delimiter: \";\"`"), False),
                                               (ZeroDivisionError("a bug"), True)])
def test_a_run_failing_with_a_tideline_error_logs_its_message_without_the_stack(
        prefect_server: None, error: Exception, traced: bool) -> None:
    @task
    def step() -> None:
        raise error

    @flow
    def failing() -> None:
        step()

    kept = Kept()
    loggers = [logging.getLogger(name) for name in RUN_LOGGERS]
    for logger in loggers:
        logger.addHandler(kept)
    try:
        with pytest.raises(type(error)):
            failing()
    finally:
        for logger in loggers:
            logger.removeHandler(kept)
    failed = [r for r in kept.records
              if r.levelno >= logging.ERROR and str(error) in r.getMessage()]
    assert {r.name for r in failed} == set(RUN_LOGGERS)  # the task's and the flow's
    assert {r.name for r in failed if r.exc_info} == (set(RUN_LOGGERS) if traced else set())
