"""E-mail through a real in-process SMTP server (aiosmtpd) and the outbox: what arrives is what
was sent (recipients, subject, both bodies, the attachment), logins happen, refusals are
retried and then recorded, never raised."""
from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from tideline.core.errors import ConfigError
from tideline.monitoring.mail import (
    Attachment,
    Mail,
    Outbox,
    Smtp,
    build_message,
    deliver,
    valid_address,
)

SENDER = "tideline@example.com"
MAIL = Mail(to=("owner@example.com", "second@example.org"), subject="Drift in customer_spending",
            text="spend_30d drifted", html="<p>spend_30d drifted</p>",
            attachments=(Attachment("report.html", b"<html>report</html>"),))


class Inbox:
    """An aiosmtpd handler keeping what it received; refuses every message when told to."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], email.message.EmailMessage]] = []
        self.refuse = False
        self.attempts = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001 - aiosmtpd
        self.attempts += 1
        if self.refuse:
            return "554 5.7.1 message refused by policy"
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 OK"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"alerts", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as probe:  # aiosmtpd's readiness check cannot connect to port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port,
                            authenticator=_authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_smtp_delivers_recipients_subject_bodies_and_attachment(smtp_server) -> None:
    inbox, port = smtp_server
    results = deliver(Smtp("127.0.0.1", port, "none", "alerts", "s3cret"), [MAIL], SENDER)
    assert [r.sent for r in results] == [True] and results[0].attempts == 1
    (recipients, message), = inbox.received
    assert recipients == ["owner@example.com", "second@example.org"]
    assert message["Subject"] == "Drift in customer_spending" and message["From"] == SENDER
    assert message.get_body(("plain",)).get_content().strip() == "spend_30d drifted"
    assert message.get_body(("html",)).get_content().strip() == "<p>spend_30d drifted</p>"
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "report.html"
    assert attachment.get_content() == "<html>report</html>"


def test_a_wrong_password_is_a_recorded_failure(smtp_server) -> None:
    inbox, port = smtp_server
    (result,) = deliver(Smtp("127.0.0.1", port, "none", "alerts", "wrong"), [MAIL], SENDER,
                        attempts=2, backoff=0)
    assert not result.sent and result.attempts == 2
    assert "SMTPAuthenticationError" in result.detail and inbox.received == []


def test_a_refusing_server_is_retried_then_recorded(smtp_server) -> None:
    inbox, port = smtp_server
    inbox.refuse = True
    (result,) = deliver(Smtp("127.0.0.1", port, "none"), [MAIL], SENDER, attempts=3, backoff=0)
    assert not result.sent and result.attempts == 3 and inbox.attempts == 3
    assert "554" in result.detail and "refused by policy" in result.detail


def test_an_unreachable_server_is_recorded(tmp_path: Path) -> None:
    (result,) = deliver(Smtp("127.0.0.1", 9, "none", timeout=2), [MAIL], SENDER, attempts=1)
    assert not result.sent and "Error" in result.detail


def test_the_outbox_writes_whole_eml_files(tmp_path: Path) -> None:
    (result,) = deliver(Outbox(tmp_path / "outbox"), [MAIL], SENDER)
    assert result.sent
    (path,) = (tmp_path / "outbox").glob("*.eml")
    assert result.detail == str(path) and not list((tmp_path / "outbox").glob("*.part"))
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == "owner@example.com, second@example.org"
    assert [a.get_filename() for a in message.iter_attachments()] == ["report.html"]


@pytest.mark.parametrize("text", ["no-at-sign", "a@b", "two@x.com, three@y.com",
                                  "evil@x.com\r\nBcc: all@x.com", "Name <a@x.com>", "", None])
def test_addresses_are_validated(text: str | None) -> None:
    assert not valid_address(text)
    with pytest.raises(ConfigError, match="not an e-mail address"):
        build_message(Mail(to=(text,), subject="s", text="t", html="h"), SENDER)  # type: ignore


def test_a_bad_address_is_recorded_without_stopping_the_others(tmp_path: Path) -> None:
    bad = Mail(to=("crm-team",), subject="s", text="t", html="h")
    results = deliver(Outbox(tmp_path), [bad, MAIL], SENDER)
    assert [r.sent for r in results] == [False, True]
    assert "not an e-mail address: 'crm-team'" in results[0].detail
