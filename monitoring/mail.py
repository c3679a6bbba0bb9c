"""E-mail: messages built with the standard library, sent through SMTP (STARTTLS or TLS, with
login) or, by default, written as `.eml` files to a local outbox. A send that keeps failing is
recorded as undelivered, never raised: losing an alert must not lose the report it is about."""
from __future__ import annotations

import smtplib
import ssl
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

from tideline.core.addresses import valid_address
from tideline.core.errors import ConfigError
from tideline.core.retry import with_retries
from tideline.core.secrets import secret_value


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime: str = "text/html"


@dataclass(frozen=True)
class Mail:
    to: tuple[str, ...]
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()


def build_message(mail: Mail, sender: str) -> EmailMessage:
    """A multipart message: plain text, an HTML alternative and the attachments."""
    for address in (sender, *mail.to):
        if not valid_address(address):
            raise ConfigError(f"not an e-mail address: {address!r}")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(mail.to)
    # a subject is built from names in the data; a line break there would start a new header
    message["Subject"] = " ".join(mail.subject.split())
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    for item in mail.attachments:
        main, _, sub = item.mime.partition("/")
        message.add_attachment(item.content, maintype=main, subtype=sub,
                               filename=item.filename)
    return message


class Transport(Protocol):
    def send(self, message: EmailMessage) -> str:
        """Deliver the message; return where it went. Raises OSError/SMTPException on failure."""
        ...


@dataclass(frozen=True)
class Outbox:
    """The embedded default: each message as an `.eml` file, written whole or not at all."""

    directory: Path

    def send(self, message: EmailMessage) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        partial = path.with_suffix(".part")
        partial.write_bytes(bytes(message))
        partial.replace(path)
        return str(path)


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = 20.0

    def send(self, message: EmailMessage) -> str:
        context = ssl.create_default_context()
        if self.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                    context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if self.security == "starttls":
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password or "")
            refused = client.send_message(message)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)
        return f"smtp://{self.host}:{self.port}"

    def __repr__(self) -> str:  # never show the password
        return f"Smtp({self.host}:{self.port}, {self.security}, user={self.username!r})"


@dataclass(frozen=True)
class Delivery:
    to: tuple[str, ...]
    subject: str
    sent: bool
    attempts: int
    detail: str
    """Where it went, or the last error."""


def deliver(transport: Transport, mails: Sequence[Mail], sender: str, attempts: int = 3,
            backoff: float = 1.0) -> list[Delivery]:
    """Send each mail, retrying with exponential backoff; failures come back as records."""
    results = []
    for mail in mails:
        try:
            message = build_message(mail, sender)
        except ConfigError as exc:
            results.append(Delivery(mail.to, mail.subject, False, 0, str(exc)))
            continue
        where, tries, error = with_retries(partial(transport.send, message),
                                           (OSError, smtplib.SMTPException), attempts, backoff)
        results.append(Delivery(mail.to, mail.subject, where is not None, tries,
                                where or error))
    return results


def open_transport(settings: object) -> Transport:
    """SMTP when `smtp_host` is set, else the outbox in the data directory. The password comes
    from `TIDELINE_SMTP_PASSWORD` or the Prefect Secret block named by `smtp_password_secret`."""
    host = getattr(settings, "smtp_host", None)
    if not host:
        return Outbox(Path(settings.data_dir) / "outbox")  # type: ignore[attr-defined]
    password = secret_value(settings.smtp_password,  # type: ignore[attr-defined]
                            settings.smtp_password_secret,  # type: ignore[attr-defined]
                            "smtp_password_secret")
    if password is not None and not isinstance(password, str):
        raise ConfigError("the Prefect Secret block named by smtp_password_secret holds "
                          f"{type(password).__name__}, not the password as a string")
    return Smtp(host, settings.smtp_port, settings.smtp_security,  # type: ignore[attr-defined]
                settings.smtp_username, password)  # type: ignore[attr-defined]


def send_mails(settings: object, mails: Sequence[Mail]) -> list[Delivery]:
    """Deliver through the configured transport; when it cannot be opened (a missing secret),
    every mail comes back as not sent with the reason, so what was decided stands."""
    try:
        transport = open_transport(settings)
    except Exception as exc:  # noqa: BLE001 - any failure to open is recorded, not raised
        return [Delivery(m.to, m.subject, False, 0, f"no mail transport: {exc}") for m in mails]
    return deliver(transport, mails, settings.mail_from)  # type: ignore[attr-defined]
