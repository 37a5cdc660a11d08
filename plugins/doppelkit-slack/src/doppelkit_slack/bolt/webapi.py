"""The Web API client the bot talks to Slack (or a fake Slack) through.

slack_sdk's ``WebClient`` retries only connection errors by default; replies must survive
rate limits (429 + ``Retry-After``) and transient 5xx, so both get a bounded retry here.
"""

from __future__ import annotations

import time

from slack_sdk import WebClient
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

MAX_RETRY_AFTER_S = 60.0
DEFAULT_API_URL = "https://slack.com/api/"


class RetryAfterHandler(RetryHandler):
    """Retry 429s after exactly ``Retry-After`` seconds (capped), and 500/502/503/504 with backoff."""

    def __init__(self, max_retry_count: int, backoff: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.backoff = backoff

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in (429, 500, 502, 503, 504)

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:  # pragma: no cover - _can_retry needs a response
            raise error or RuntimeError("no response to retry")
        delay = self.backoff * (2**state.current_attempt)
        if response.status_code == 429:
            delay = retry_after(response)
        state.next_attempt_requested = True
        time.sleep(delay)
        state.increment_current_attempt()


def retry_after(response: HttpResponse) -> float:
    for key, values in response.headers.items():
        if key.lower() == "retry-after" and values:
            try:
                return min(max(float(values[0]), 0.0), MAX_RETRY_AFTER_S)
            except ValueError:
                break
    return 1.0


def normalise_api_url(url: str | None) -> str:
    """slack_sdk joins method names onto the base URL, so it must end with a slash."""
    url = url or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


def web_client(token: str, api_url: str | None, *, retries: int, backoff: float, timeout: float) -> WebClient:
    handlers: list[RetryHandler] = [RetryAfterHandler(retries, backoff)] if retries else []
    return WebClient(
        token=token, base_url=normalise_api_url(api_url), timeout=int(timeout), retry_handlers=handlers
    )
