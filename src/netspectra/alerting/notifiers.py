"""Notifiers: where an alert summary goes — the log, a webhook, e-mail; several at once.

Every notifier subclasses :class:`Notifier` and registers itself under a ``kind`` through
``__init_subclass__`` (``class WebhookNotifier(Notifier, kind="webhook")``; an abstract intermediate
leaves ``kind`` out); third-party notifiers come through the ``netspectra.notifiers`` entry-point
group (loaded by :func:`notifier_class` on first use of an unknown kind).

Contract: :meth:`Notifier.send` delivers one :class:`Notification` or raises :class:`NotifierError`
saying why (never swallowed, never a secret in the message); the alerter records each outcome.

* :class:`LogNotifier` — a WARNING log record with the plain-text summary. Always available: alerting
  works without SMTP (the original turned itself off when ``smtp.host`` was empty).
* :class:`WebhookNotifier` — HTTP POST of a JSON document (or a Slack-style ``{"text": …}`` for incoming
  webhooks), ``timeout_s`` per attempt, retried with exponential back-off on connection errors, timeouts,
  HTTP 429 and 5xx (other 4xx are not retried); with a ``secret``, headers ``X-NetSpectra-Timestamp`` and
  ``X-NetSpectra-Signature: sha256=HEX`` where HEX = HMAC-SHA256(secret, ``timestamp + "." + body``)
  (:func:`verify_signature` checks one).
* :class:`EmailNotifier` — SMTP with STARTTLS when the server offers it (required when a password would
  otherwise cross a non-loopback connection in clear, as Go's ``PlainAuth``), AUTH when a username is
  set; the original's HTML body plus a plain-text part; refused recipients are an error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from importlib.metadata import entry_points
from typing import Any, ClassVar

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "netspectra.notifiers"
_REGISTRY: dict[str, type[Notifier]] = {}
SIGNATURE_HEADER = "X-NetSpectra-Signature"
TIMESTAMP_HEADER = "X-NetSpectra-Timestamp"


class NotifierError(Exception):
    """A notification that was not delivered; the message says why (and holds no secret)."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert summary: ``subject``, the HTML ``html`` body, a plain-text ``text`` rendering, the
    structured ``alerts`` (:meth:`~netspectra.alerting.rules.RuleResult.to_dict` of every fired rule),
    the AI analysis as markdown (``""`` when none) and the check's UTC time in ns."""

    subject: str
    html: str
    text: str
    alerts: tuple[Mapping[str, Any], ...] = ()
    ai_analysis: str = ""
    time_ns: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The webhook document: ``subject``, ``time`` (RFC 3339), ``alerts``, ``ai_analysis``, ``html``."""
        return {
            "source": "netspectra",
            "subject": self.subject,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time_ns / 1e9)),
            "time_ns": self.time_ns,
            "alerts": [dict(a) for a in self.alerts],
            "ai_analysis": self.ai_analysis,
            "text": self.text,
            "html": self.html,
        }


class Notifier(ABC):
    """Delivers notifications somewhere; see the module docstring for the contract."""

    kind: ClassVar[str]
    #: Monotonic time (``time.monotonic()``) after which :meth:`send` gives up (``None``: no limit). The
    #: alerter sets it for its final check at stop, so that an endpoint that does not answer cannot hold
    #: the stop of the engine for its timeouts and retries; the built-in notifiers honour it.
    deadline: float | None = None

    def time_left(self, limit: float) -> float:
        """``limit`` (seconds), bounded by the time left until :attr:`deadline` (0.0 once it passed)."""
        if self.deadline is None:
            return limit
        return max(0.0, min(limit, self.deadline - time.monotonic()))

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is None:
            return
        other = _REGISTRY.get(kind)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise TypeError(
                f"notifier kind {kind!r} is already registered by {other.__module__}.{other.__name__}"
            )
        cls.kind = kind
        _REGISTRY[kind] = cls

    @property
    def name(self) -> str:
        """How logs and the alert history name this notifier."""
        return self.kind

    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Deliver ``notification``; :class:`NotifierError` if it could not be delivered."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (default: nothing)."""


def available_notifiers() -> dict[str, type[Notifier]]:
    """Registered notifier kinds (built-in ones and plugins loaded so far)."""
    return dict(_REGISTRY)


def notifier_class(kind: str) -> type[Notifier]:
    """The class of ``kind``: built-in, or a plugin of the ``netspectra.notifiers`` entry points."""
    if kind not in _REGISTRY:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == kind:
                cls = ep.load()
                if not (isinstance(cls, type) and issubclass(cls, Notifier)):
                    raise TypeError(
                        f"entry point {ep.value!r} of {ENTRY_POINT_GROUP} is not a Notifier class"
                    )
                _REGISTRY.setdefault(kind, cls)
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(
            f"unknown notifier kind {kind!r}; known kinds are {', '.join(sorted(_REGISTRY))}"
        ) from None


# --------------------------------------------------------------------------------------------------
# log
# --------------------------------------------------------------------------------------------------


class LogNotifier(Notifier, kind="log"):
    """Writes each notification as one WARNING record of ``logger`` (default this module's)."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.WARNING) -> None:
        self.logger = logger or log
        self.level = level

    def send(self, notification: Notification) -> None:
        ai = f"\nAI analysis:\n{notification.ai_analysis}" if notification.ai_analysis else ""
        self.logger.log(self.level, "ALERT %s\n%s%s", notification.subject, notification.text, ai)


# --------------------------------------------------------------------------------------------------
# webhook
# --------------------------------------------------------------------------------------------------


def sign(secret: str | bytes, body: bytes, timestamp: str) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256(secret, ``timestamp.body``)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str | bytes, body: bytes, timestamp: str, signature: str, *, max_age_s: float | None = 300.0
) -> bool:
    """Whether ``signature`` (the header value) signs ``body`` at ``timestamp`` with ``secret``, and the
    timestamp is at most ``max_age_s`` old (``None``: any age). Constant-time comparison."""
    if max_age_s is not None:
        try:
            if abs(time.time() - float(timestamp)) > max_age_s:
                return False
        except ValueError:
            return False
    return hmac.compare_digest(sign(secret, body, timestamp), signature)


class WebhookNotifier(Notifier, kind="webhook"):
    """POSTs notifications to ``url`` (see the module docstring).

    ``format``: ``"json"`` (the :meth:`Notification.to_json` document) or ``"slack"`` (``{"text": …}``,
    Slack/Mattermost/Rocket.Chat incoming webhooks). ``retries`` extra attempts after the first, waiting
    ``backoff_initial_s`` × 2^i (at most ``backoff_max_s``; a ``Retry-After`` in seconds is honoured
    within that bound).
    """

    FORMATS = ("json", "slack")

    def __init__(
        self,
        url: str,
        *,
        secret: str = "",
        format: str = "json",
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {url!r} must start with http:// or https://")
        if format not in self.FORMATS:
            raise ValueError(f"webhook format {format!r} is not one of {', '.join(self.FORMATS)}")
        if timeout_s <= 0 or retries < 0 or backoff_initial_s < 0:
            raise ValueError("webhook timeout_s must be > 0, retries and backoff_initial_s >= 0")
        self.url = url
        self._secret = secret
        self.format = format
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.headers = dict(headers or {})
        self._sleep = time.sleep

    def __repr__(self) -> str:
        return f"WebhookNotifier({self._safe_url()!r}, format={self.format!r}, signed={bool(self._secret)})"

    @property
    def name(self) -> str:
        return f"webhook {self._safe_url()}"

    def _safe_url(self) -> str:
        # incoming-webhook URLs carry their token in the path: show scheme and host only
        parts = self.url.split("/")
        return "/".join(parts[:3]) + ("/…" if len(parts) > 3 else "")

    def body(self, notification: Notification) -> bytes:
        """The request body for ``notification`` in this notifier's format."""
        if self.format == "slack":
            text = f"*{notification.subject}*\n{notification.text}"
            if notification.ai_analysis:
                text += f"\n\n*AI-Powered Analysis*\n{notification.ai_analysis}"
            doc: dict[str, Any] = {"text": text}
        else:
            doc = notification.to_json()
        return json.dumps(doc, ensure_ascii=False).encode()

    def send(self, notification: Notification) -> None:
        body = self.body(notification)
        last = ""
        for attempt in range(self.retries + 1):
            timeout = self.time_left(self.timeout_s)
            if timeout <= 0:  # the stop's deadline passed (Notifier.deadline)
                raise NotifierError(
                    f"{self.name}: no time left at stop after {attempt} attempt(s)"
                    + (f"; last error: {last}" if last else "")
                )
            headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "netspectra-alerter"}
            headers.update(self.headers)
            if self._secret:
                ts = str(int(time.time()))
                headers[TIMESTAMP_HEADER] = ts
                headers[SIGNATURE_HEADER] = sign(self._secret, body, ts)
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            retry_after: float | None = None
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    resp.read()
                return
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} {exc.reason}"
                if not (exc.code == 429 or exc.code >= 500):
                    raise NotifierError(f"{self.name}: {last} (not retried)") from None
                ra = exc.headers.get("Retry-After") if exc.headers else None
                if ra and ra.strip().isdigit():
                    retry_after = float(ra)
            except (urllib.error.URLError, OSError) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                last = f"{type(reason).__name__}: {reason}"
            if attempt < self.retries:
                wait = min(self.backoff_max_s, self.backoff_initial_s * 2**attempt)
                if retry_after is not None:
                    wait = min(self.backoff_max_s, max(wait, retry_after))
                if self.time_left(wait + 0.1) <= wait:  # no retry once the stop's deadline would pass
                    raise NotifierError(
                        f"{self.name}: no time left at stop after {attempt + 1} attempt(s); "
                        f"last error: {last}"
                    )
                log.info("%s: attempt %d failed (%s); retrying in %.1f s", self.name, attempt + 1, last, wait)
                self._sleep(wait)
        raise NotifierError(f"{self.name}: failed after {self.retries + 1} attempt(s); last error: {last}")


# --------------------------------------------------------------------------------------------------
# e-mail
# --------------------------------------------------------------------------------------------------

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class EmailNotifier(Notifier, kind="email"):
    """Sends each notification as one HTML e-mail to ``recipients`` (see the module docstring).

    ``port`` 0 → 587 when a username is set, else 25. ``starttls``: ``"auto"`` (when offered; required
    before AUTH to a non-loopback host), ``"always"`` (fail when not offered) or ``"never"``.
    ``tls_context`` verifies the server (default: the system's trust store).
    """

    STARTTLS_MODES = ("auto", "always", "never")

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        sender: str,
        recipients: Sequence[str],
        username: str = "",
        password: str = "",
        starttls: str = "auto",
        timeout_s: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if not host:
            raise ValueError("smtp.host is empty; set it (e.g. SMTP_HOST) to send alerts by e-mail")
        if not sender:
            raise ValueError("smtp.from is empty; set the sender address of alert e-mails")
        if not recipients:
            raise ValueError("smtp.to is empty; list the recipients of alert e-mails, comma-separated")
        if starttls not in self.STARTTLS_MODES:
            raise ValueError(f"starttls {starttls!r} is not one of {', '.join(self.STARTTLS_MODES)}")
        self.host = host
        self.port = int(port) or (587 if username else 25)
        self.sender = sender
        self.recipients = tuple(recipients)
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout_s = float(timeout_s)
        self.tls_context = tls_context

    @classmethod
    def from_config(cls, smtp: Any, **kwargs: Any) -> EmailNotifier:
        """From the ``smtp`` section (:class:`~netspectra.config.models.SmtpConfig`)."""
        return cls(
            smtp.host,
            smtp.port,
            sender=smtp.from_,
            recipients=smtp.recipients,
            username=smtp.username,
            password=smtp.password,
            **({"starttls": smtp.starttls} if getattr(smtp, "starttls", None) else {}) | kwargs,
        )

    def __repr__(self) -> str:
        return f"EmailNotifier({self.host}:{self.port}, to={list(self.recipients)}, user={self.username!r})"

    @property
    def name(self) -> str:
        return f"email {self.host}:{self.port}"

    def message(self, notification: Notification) -> EmailMessage:
        """The e-mail for ``notification``: plain-text and HTML alternatives, UTF-8."""
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Subject"] = notification.subject
        msg["Date"] = formatdate(notification.time_ns / 1e9 if notification.time_ns else None, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg.set_content(notification.text or notification.subject, charset="utf-8")
        msg.add_alternative(notification.html, subtype="html", charset="utf-8")
        return msg

    def send(self, notification: Notification) -> None:
        msg = self.message(notification)
        where = f"SMTP {self.host}:{self.port}"
        timeout = self.time_left(self.timeout_s)
        if timeout <= 0:  # the stop's deadline passed (Notifier.deadline)
            raise NotifierError(f"{where}: no time left at stop")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=timeout) as smtp:
                smtp.ehlo()
                tls = False
                if self.starttls != "never" and smtp.has_extn("starttls"):
                    smtp.starttls(context=self.tls_context or ssl.create_default_context())
                    smtp.ehlo()
                    tls = True
                elif self.starttls == "always":
                    raise NotifierError(f"{where}: the server does not offer STARTTLS (starttls: always)")
                if self.username:
                    if not tls and self.host not in _LOOPBACK:
                        raise NotifierError(
                            f"{where}: refusing to send the SMTP password over an unencrypted connection "
                            "(the server offers no STARTTLS)"
                        )
                    smtp.login(self.username, self._password)
                refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=list(self.recipients))
        except NotifierError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifierError(
                f"{where}: authentication as {self.username!r} failed ({exc.smtp_code})"
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise NotifierError(f"{where}: every recipient was refused: {sorted(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else exc.smtp_error
            )
            raise NotifierError(f"{where}: {exc.smtp_code} {text}") from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise NotifierError(f"{where}: {type(exc).__name__}: {exc}") from None
        if refused:
            raise NotifierError(f"{where}: recipients refused: {sorted(refused)}")
