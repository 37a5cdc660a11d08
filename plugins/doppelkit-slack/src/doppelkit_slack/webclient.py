"""A slack_sdk ``WebClient`` that survives rate limits and flaky networks, and clear errors.

:class:`SlackCaller` wraps one client for a whole job: every call goes through a concurrency
bound and a shared pause (after one 429 nobody calls until ``Retry-After`` has passed), is
retried by slack_sdk's retry handlers (429 honouring ``Retry-After``; 5xx and dropped
connections with exponential backoff), and fails with a :class:`~doppelkit.errors.UserError`
that says what to do — never with the token in it.

slack_sdk is imported inside functions: ``doppelkit --help`` imports this plugin.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from doppelkit.errors import UserError

if TYPE_CHECKING:
    from slack_sdk import WebClient

DEFAULT_API_URL = "https://slack.com/api/"
AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "no_permission"}
)
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
MAX_NETWORK_RETRIES = 5


class SlackAuthError(UserError):
    """The token is missing, wrong, revoked, or lacks a scope."""


class SlackUnavailableError(UserError):
    """Slack could not be reached, or kept failing or rate-limiting after every retry."""


class SlackCallError(UserError):
    """Slack answered ``ok: false`` with an error the caller may handle (``not_in_channel``…)."""

    def __init__(self, method: str, error: str, message: str | None = None) -> None:
        self.method, self.error = method, error
        super().__init__(message or f"Slack refused {method}: {error}")


def normalise_api_url(url: str | None) -> str:
    """slack_sdk joins method names onto the base URL, so it must end with a slash."""
    url = url or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


class Pacer:
    """A pause shared by every worker: set by a 429, waited out before the next call."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self._clock() + seconds)

    def wait(self) -> None:
        with self._lock:
            delay = self._until - self._clock()
        if delay > 0:
            time.sleep(delay)


def retry_handlers(
    *, max_retries: int, backoff_s: float, max_retry_after_s: float, pacer: Pacer
) -> list[Any]:
    """slack_sdk retry handlers: 429 (Retry-After, shared with ``pacer``; up to ``max_retries``),
    5xx and connection errors (exponential backoff; at most ``MAX_NETWORK_RETRIES``).

    Subclasses of slack_sdk's own handlers, because the stock 429 handler parses Retry-After
    as a whole number (a fractional value from a test server would crash it) and always adds
    up to a second of jitter; and the stock 5xx handler leaves out 502/504, which proxies in
    front of Slack do return.
    """
    from slack_sdk.http_retry import (
        BackoffRetryIntervalCalculator,
        ConnectionErrorRetryHandler,
        Jitter,
        RateLimitErrorRetryHandler,
    )
    from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

    class ProportionalJitter(Jitter):
        """Up to 25% extra, so parallel workers do not retry in lockstep."""

        def recalculate(self, duration: float) -> float:
            return duration * (1 + 0.25 * random.random())

    class RetryAfterHandler(RateLimitErrorRetryHandler):
        def prepare_for_next_attempt(
            self, *, state: Any, request: Any, response: Any = None, error: Any = None
        ):
            if response is None:  # pragma: no cover - only called for 429 responses
                raise error
            delay = min(retry_after_seconds(response.headers), max_retry_after_s)
            pacer.hold(delay)
            state.next_attempt_requested = True
            time.sleep(delay * (1 + 0.1 * random.random()))
            state.increment_current_attempt()

    class ServerErrorHandler(ServerErrorRetryHandler):
        def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
            return response is not None and response.status_code in RETRIED_STATUSES

    backoff = BackoffRetryIntervalCalculator(backoff_factor=backoff_s, jitter=ProportionalJitter())
    # Backoff doubles: past a few retries an outage is reported rather than waited out.
    network_retries = min(max_retries, MAX_NETWORK_RETRIES)
    return [
        RetryAfterHandler(max_retry_count=max_retries),
        ServerErrorHandler(max_retry_count=network_retries, interval_calculator=backoff),
        ConnectionErrorRetryHandler(max_retry_count=network_retries, interval_calculator=backoff),
    ]


def web_client(
    token: str | None,
    api_url: str | None,
    *,
    max_retries: int,
    backoff_s: float,
    max_retry_after_s: float,
    timeout_s: float,
    pacer: Pacer | None = None,
) -> WebClient:
    """A ``WebClient`` on ``api_url`` with :func:`retry_handlers` (``max_retries=0``: none).

    ``timeout_s`` is passed on as is: urllib takes fractional seconds, and rounding would turn
    a sub-second timeout into 0 (no timeout at all, or an instant failure).
    """
    from slack_sdk import WebClient

    handlers = retry_handlers(
        max_retries=max_retries,
        backoff_s=backoff_s,
        max_retry_after_s=max_retry_after_s,
        pacer=pacer or Pacer(),
    )
    return WebClient(
        token=token,
        base_url=normalise_api_url(api_url),
        timeout=timeout_s,  # type: ignore[arg-type]  # annotated int; urllib accepts float
        retry_handlers=handlers,
    )


def retry_after_seconds(headers: Any) -> float:
    """Retry-After in seconds from slack_sdk's header mapping (values may be lists)."""
    for name, value in dict(headers or {}).items():
        if name.lower() == "retry-after":
            value = value[0] if isinstance(value, (list, tuple)) and value else value
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                break
    return 1.0


class SlackCaller:
    """Calls Web API methods for one job through a bounded, paced, retrying ``WebClient``.

    ``token_hint`` names where the token came from, for error messages (``SLACK_BOT_TOKEN``);
    ``resume_hint`` is appended to errors that leave work to finish (how to resume).
    """

    def __init__(
        self,
        token: str,
        api_url: str | None = None,
        *,
        max_concurrency: int = 4,
        max_retries: int = 8,
        backoff_s: float = 1.0,
        max_retry_after_s: float = 300.0,
        timeout_s: float = 30.0,
        token_hint: str = "SLACK_BOT_TOKEN",
        resume_hint: str = "",
    ) -> None:
        self.api_url = normalise_api_url(api_url)
        self.pacer = Pacer()
        self.token_hint = token_hint
        self.resume_hint = resume_hint
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.client: WebClient = self._client(token, max_retries, backoff_s, max_retry_after_s, timeout_s)

    def _client(
        self, token: str, max_retries: int, backoff_s: float, max_retry_after_s: float, timeout_s: float
    ) -> WebClient:
        return web_client(
            token,
            self.api_url,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_retry_after_s=max_retry_after_s,
            timeout_s=timeout_s,
            pacer=self.pacer,
        )

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One Web API call (``None`` params left out); the response body as a dict."""
        from slack_sdk.errors import SlackApiError, SlackClientError

        sent = {k: v for k, v in params.items() if v is not None}
        with self._slots:
            self.pacer.wait()
            try:
                response = self.client.api_call(method, http_verb="POST", params=sent)
            except SlackApiError as exc:
                raise self._api_error(method, exc.response.status_code, exc.response.data) from None
            except (OSError, SlackClientError) as exc:  # URLError, RemoteDisconnected, timeouts
                raise SlackUnavailableError(
                    f"Could not reach Slack at {self.api_url} for {method} after retrying "
                    f"({type(exc).__name__}: {exc}). Check the network and source.api_url.{self._resume()}"
                ) from None
        data = response.data
        return data if isinstance(data, dict) else {}

    def _resume(self) -> str:
        return f" {self.resume_hint}" if self.resume_hint else ""

    def _api_error(self, method: str, status: int, data: Any) -> UserError:
        body = data if isinstance(data, dict) else {}
        error = str(body.get("error") or f"HTTP {status}")
        if error in AUTH_ERRORS:
            return SlackAuthError(
                f"Slack rejected the token ({error}) on {method}: check {self.token_hint} — it must be a "
                "valid, unrevoked token of this workspace (a bot token starts with xoxb-)."
            )
        if error == "missing_scope":
            needed = body.get("needed") or "?"
            return SlackAuthError(
                f"The Slack token lacks the OAuth scope {needed!s} that {method} needs (missing_scope). "
                "Add it under OAuth & Permissions in the app's settings, reinstall the app, and update "
                f"{self.token_hint}."
            )
        if status == 429 or error == "ratelimited":
            return SlackUnavailableError(
                f"Slack kept rate-limiting {method} (HTTP 429) after every retry.{self._resume()}"
            )
        if status >= 500 or status != 200:
            return SlackUnavailableError(
                f"Slack answered {method} with HTTP {status} after retrying ({error}).{self._resume()}"
            )
        return SlackCallError(method, error)
