"""A failed flow tells the pipeline owner what failed, where, why and how to resume."""
from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from tideline.core.errors import ModelError
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
