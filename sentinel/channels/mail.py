"""E-mail over SMTP (standard library): plain text with an HTML alternative.

``port`` 465 means TLS from the first byte (SMTPS); any other port (587 by
default) connects in plain text and must upgrade with STARTTLS before the
password is sent (``tls: implicit`` / ``tls: starttls`` overrides the port
rule for a server that does it otherwise) — a server that offers no STARTTLS is refused, never
talked to in the clear. Certificates are verified against the system's CAs
(``SSL_CERT_FILE`` is honoured) or ``ca_file``. Every step has a timeout.

What the server answers decides: a refused login (535), sender or
recipients (5xx) is permanent; 4xx answers, timeouts and dropped
connections are retried. The password is masked in every log line.

Mail servers throttle senders without publishing a number: we send at most
one e-mail every 2 seconds and merge a backlog into one digest e-mail.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional, Sequence, Tuple

from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.options import check_language, check_str, unknown_keys
from sentinel.channels.plain import digest_title, plain_digest, plain_text
from sentinel.common.redact import redact
from sentinel.common.safetext import printable
from sentinel.model.alerts import Alert
from sentinel.model.render import PRODUCT, cap
from sentinel.model.render import title as alert_title

if TYPE_CHECKING:  # smtplib, ssl and email load on the first send, not with the channels
    import ssl
    from email.message import EmailMessage

DEFAULT_PORT = 587
SSL_PORT = 465
TLS_MODES = ("implicit", "starttls")
TIMEOUT = 20.0
MAX_TEXT = 60000
_ADDRESS = r"^[^@\s<>,;]+@[^@\s<>,;]+$"


def _one_line(text: str) -> str:
    """A header value: line breaks (CR/LF would inject headers) become spaces,
    other control characters are escaped as everywhere run text is shown."""
    return printable(" ".join(text.split()))


def _recipients(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(part).strip() for part in value if str(part).strip()]
    return []


def html_body(subject: str, text: str) -> str:
    """The HTML alternative: the same text, escaped, in a readable frame."""
    lines = html.escape(text).replace("\n", "<br>\n")
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        f'<body style="font-family:-apple-system,system-ui,sans-serif;font-size:14px;color:#1d1d1f">'
        f'<h2 style="font-size:18px">{html.escape(subject)}</h2>'
        f'<div style="font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap">{lines}</div>'
        f'<p style="color:#999;font-size:12px">{PRODUCT}</p></body></html>'
    )


@register
class EmailChannel(Channel):
    type_name: ClassVar[str] = "email"
    min_interval: ClassVar[float] = 2.0
    rate_limit: ClassVar[Optional[Tuple[int, float]]] = (20, 60.0)
    supports_digest: ClassVar[bool] = True
    OPTIONS = (
        "smtp_server",
        "port",
        "tls",
        "username",
        "password",
        "sender",
        "to",
        "ca_file",
        "timeout",
        "language",
    )

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", **kwargs: Any) -> None:
        super().__init__(name, options, language, **kwargs)
        self.server: str = self.options["smtp_server"]
        self.port: int = int(self.options.get("port") or DEFAULT_PORT)
        self.sender: str = self.options["sender"]
        self.username: str = self.options.get("username") or self.sender
        self.password: Optional[str] = self.options.get("password") or None
        self.recipients = _recipients(self.options["to"])
        self.timeout = float(self.options.get("timeout") or TIMEOUT)
        mode = self.options.get("tls") or ("implicit" if self.port == SSL_PORT else "starttls")
        self.implicit_tls = mode == "implicit"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        import re

        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_str(options, "smtp_server", required=True)
        for key in ("username", "password", "ca_file"):
            problems += check_str(options, key)
        problems += check_language(options)
        port = options.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            problems.append(("port", "must be a port number (465: TLS from the start; 587: STARTTLS)"))
        if options.get("tls") not in (None, *TLS_MODES):
            problems.append(("tls", f"must be one of {', '.join(TLS_MODES)} (default: implicit on port 465)"))
        timeout = options.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 300
        ):
            problems.append(("timeout", "must be seconds, more than 0 and at most 300"))
        sender = options.get("sender")
        if sender is None or sender == "":
            problems.append(("sender", "required: the address alerts come from"))
        elif not isinstance(sender, str) or not re.match(_ADDRESS, sender.strip()):
            problems.append(("sender", "must be an e-mail address"))
        to = options.get("to")
        addresses = _recipients(to)
        if to is None or to == "" or to == []:
            problems.append(("to", "required: one address or a list of them"))
        elif (
            not isinstance(to, (str, list))
            or not addresses
            or not all(re.match(_ADDRESS, a) for a in addresses)
        ):
            problems.append(("to", "must be an e-mail address or a list of them"))
        server = options.get("smtp_server")
        if isinstance(server, str) and ("/" in server or ":" in server or any(c.isspace() for c in server)):
            problems.append(("smtp_server", "must be a host name (put the port under port:)"))
        return problems

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        return [options["smtp_server"]]

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []

    def pace_key(self) -> str:
        key = f"{self.server}:{self.port}|{self.username}"
        return self.destination_key(key)

    def message(self, subject: str, text: str, alert_id: str) -> EmailMessage:
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid

        message = EmailMessage()
        message["Subject"] = _one_line(cap(subject, 200))
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.sender.rsplit("@", 1)[-1])
        message["X-Sentinel-Alert-Id"] = _one_line(cap(alert_id, 200))
        message.set_content(text)
        message.add_alternative(html_body(_one_line(subject), text), subtype="html")
        return message

    def compose(self, alert: Alert) -> EmailMessage:
        lang = self.language_for(alert)
        subject = alert_title(alert, lang)
        return self.message(
            subject,
            plain_text(alert, lang, MAX_TEXT, tail_lines=60, tail_chars=20000, stacks=True)
            or _one_line(subject),
            alert.alert_id,
        )

    def digest_size(self, alerts: Sequence[Alert]) -> int:
        return len(alerts)

    def send(self, alert: Alert) -> str:
        return self._deliver(self.compose(alert))

    def send_digest(self, alerts: Sequence[Alert]) -> str:
        lang = self.language_for(alerts[0])
        subject = digest_title(alerts, lang)
        return self._deliver(self.message(subject, plain_digest(alerts, lang), f"digest of {len(alerts)}"))

    def _context(self) -> ssl.SSLContext:
        import ssl

        return ssl.create_default_context(cafile=self.options.get("ca_file") or None)

    def _deliver(self, message: EmailMessage) -> str:
        import smtplib
        import socket
        import ssl

        secrets = self.secrets()
        where = f"SMTP {self.server}:{self.port}"
        started = time.monotonic()
        try:
            if self.implicit_tls:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.server, self.port, timeout=self.timeout, context=self._context()
                )
            else:
                client = smtplib.SMTP(self.server, self.port, timeout=self.timeout)
            with client:
                if not self.implicit_tls:
                    client.ehlo()
                    if not client.has_extn("starttls"):
                        raise DeliveryError(
                            f"{where} offers no STARTTLS: refusing to send the password in "
                            "the clear (use port 465 if the server speaks TLS from the start)",
                            permanent=True,
                        )
                    client.starttls(context=self._context())
                    client.ehlo()
                if self.password:
                    client.login(self.username, self.password)
                refused = client.send_message(message)
                answer = f"{where}: accepted for {len(self.recipients) - len(refused)} recipient(s)"
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"{where} refused the login ({exc.smtp_code}): check username/password "
                "(many providers want an app password)",
                permanent=True,
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"{where} refused every recipient: {redact(exc.recipients, secrets)}", permanent=True
            ) from None
        except smtplib.SMTPResponseException as exc:
            text = redact(
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else exc.smtp_error,
                secrets,
            )
            raise DeliveryError(
                f"{where} answered {exc.smtp_code} {text}", permanent=500 <= exc.smtp_code < 600
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"{where}: the server's certificate is not trusted ({exc.verify_message}); "
                "set ca_file to its CA",
                permanent=True,
            ) from None
        except (socket.timeout, TimeoutError):
            raise DeliveryError(f"{where} timed out after {time.monotonic() - started:.0f} s") from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise DeliveryError(
                f"{where} failed: {redact(f'{exc.__class__.__name__}: {exc}', secrets)}"
            ) from None
        return answer
