"""A real SMTP server on 127.0.0.1 (aiosmtpd) with TLS and AUTH, for the e-mail channel.

Not a mock: the channel talks SMTP to it with the standard library, through
a real TLS handshake that verifies a certificate.

- ``tls="starttls"``: plain connection, ``STARTTLS`` required before
  ``MAIL`` and before ``AUTH`` (port 587's rule);
- ``tls="implicit"``: TLS from the first byte (port 465's rule);
- AUTH PLAIN/LOGIN with ``user``/``password`` required before ``MAIL``;
  a wrong password is 535.

``TestCA`` makes a throwaway CA and a server certificate for 127.0.0.1 with
the ``openssl`` command (``ca_file`` is what a client must trust). Every
accepted message is parsed into ``messages`` (``email.message.EmailMessage``).
"""

from __future__ import annotations

import email.policy
import ssl
import subprocess
import tempfile
import threading
import warnings
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Optional

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


class TestCA:
    """A CA and a 127.0.0.1 server certificate signed by it, in a temporary directory."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sentinel-test-ca-"))
        self.ca_file = self.dir / "ca.pem"
        self.cert_file = self.dir / "server.pem"
        self.key_file = self.dir / "server.key"
        ca_key, csr, ext = self.dir / "ca.key", self.dir / "server.csr", self.dir / "ext.cnf"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
        run = [
            (
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                ca_key,
                "-out",
                self.ca_file,
                "-days",
                "2",
                "-subj",
                "/CN=run-sentinel test CA",
            ),
            (
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                self.key_file,
                "-out",
                csr,
                "-subj",
                "/CN=127.0.0.1",
            ),
            (
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                self.ca_file,
                "-CAkey",
                ca_key,
                "-CAcreateserial",
                "-out",
                self.cert_file,
                "-days",
                "2",
                "-extfile",
                ext,
            ),
        ]
        for args in run:
            subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


class _Handler:
    def __init__(self, server: FakeSMTP) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        message = BytesParser(policy=email.policy.default).parsebytes(
            envelope.original_content or envelope.content
        )
        with self.server.lock:
            self.server.envelopes.append(
                {
                    "from": envelope.mail_from,
                    "to": list(envelope.rcpt_tos),
                    "tls": session.ssl is not None or self.server.tls == "implicit",
                }
            )
            self.server.messages.append(message)  # type: ignore[arg-type]
            self.server.cond.notify_all()
        return "250 Message accepted for delivery"


class _Controller(Controller):
    def factory(self) -> Any:
        # Implicit TLS: aiosmtpd's "AUTH needs TLS" check tracks STARTTLS only,
        # so it is off there (every connection is TLS anyway); it warns of that.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            return super().factory()

    def _trigger_server(self) -> None:
        # Bound to port 0: learn the real port before the readiness probe connects.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class FakeSMTP:
    def __init__(
        self,
        ca: TestCA,
        *,
        tls: str = "starttls",
        user: str = "alice@example.org",
        password: str = "app-password-1234",
    ) -> None:
        if tls not in ("starttls", "implicit"):
            raise ValueError("tls is 'starttls' or 'implicit'")
        self.ca = ca
        self.tls = tls
        self.user = user
        self.password = password
        self.messages: list[EmailMessage] = []
        self.envelopes: list[dict[str, Any]] = []
        self.logins: list[tuple[str, bool]] = []  # (user, accepted)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._controller: Optional[_Controller] = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.user
            and auth_data.password.decode() == self.password
        )
        with self.lock:
            self.logins.append(
                (auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?", ok)
            )
        return AuthResult(success=ok, handled=False)

    def start(self) -> FakeSMTP:
        context = self.ca.server_context()
        common: dict[str, Any] = dict(
            hostname=HOST,
            port=0,
            authenticator=self._authenticate,
            auth_required=True,
            server_hostname="fake-smtp.test",
            ready_timeout=30.0,
        )
        if self.tls == "starttls":
            self._controller = _Controller(
                _Handler(self), tls_context=context, require_starttls=True, auth_require_tls=True, **common
            )
        else:
            # Every connection is TLS from the first byte; aiosmtpd's "TLS seen"
            # flag only tracks STARTTLS, so its AUTH-needs-TLS check is off here.
            self._controller = _Controller(_Handler(self), ssl_context=context, auth_require_tls=False,
                                           **common)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> FakeSMTP:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._controller is not None, "not started"
        return int(self._controller.port)

    def wait_for_messages(self, count: int, timeout: float = 30.0) -> list[EmailMessage]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"FakeSMTP: {len(self.messages)} message(s), expected {count}")
            return list(self.messages)
