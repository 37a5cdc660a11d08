"""The built-in scrubbers exactly as they were before candidates (doppelkit 0.1, every pattern on
every text): the reference the fast path is compared with (tests/test_scrub_candidates.py, and
the ingest identity test of the Slack plugin). Do not change it to match new behaviour: a new
pattern belongs in doppelkit.builtins.scrubbers and in the comparison's planted corpus.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from doppelkit.hookspecs import hookimpl
from doppelkit.settings import ScrubConfig


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


@dataclass(frozen=True)
class Pattern:
    """One kind of sensitive text. With a ``keep`` group, only the text after it is redacted
    (``Bearer [REDACTED:bearer_token]`` still reads as an auth header)."""

    kind: str
    regex: re.Pattern[str]
    keep: str | None = None
    accept: Callable[[str], bool] | None = None  # extra check on the matched text

    def sub(self, text: str, record: Callable[[str, int], None]) -> str:
        count = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal count
            if self.accept is not None and not self.accept(match.group(0)):
                return match.group(0)
            count += 1
            kept = match.group(self.keep) if self.keep else ""
            return kept + marker(self.kind)

        text = self.regex.sub(replace, text)
        if count:
            record(self.kind, count)
        return text


def _has_digit(text: str) -> bool:
    """Generated tokens virtually always contain a digit; prose that happens to fit a
    pattern ("xoxo-hugs-and-kisses", "bearer instrumentalization") does not."""
    return any(c.isdigit() for c in text)


# Private keys first: a PEM block can contain any of the other patterns. An unterminated
# block (a paste cut short) is redacted to the end of the message.
SECRETS: tuple[Pattern, ...] = (
    Pattern(
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
    ),
    Pattern("slack_token", re.compile(r"\b(?:xox[abposr]|xapp)-[A-Za-z0-9-]{8,}"), accept=_has_digit),
    Pattern(
        "slack_webhook",
        re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]+"),
    ),
    Pattern("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    Pattern("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})")),
    Pattern("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    Pattern(
        "openai_key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"), accept=_has_digit
    ),
    Pattern("stripe_key", re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}")),
    Pattern("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    Pattern("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    Pattern(
        "bearer_token",
        re.compile(r"(?P<keep>\bBearer\s+)(?!\[REDACTED)[A-Za-z0-9\-._~+/]{16,}=*", re.IGNORECASE),
        keep="keep",
        accept=_has_digit,
    ),
)

EMAIL = Pattern(
    "email",
    re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
)


def _phone_digits_ok(text: str) -> bool:
    return 8 <= sum(c.isdigit() for c in text) <= 15


# Conservative on purpose: an international number (+CC …) or a North-American style
# (555) 123-4567 / 555-123-4567 / 555.123.4567. Dates (2024-01-15), versions, times and plain
# digit runs do not match.
PHONE = Pattern(
    "phone",
    re.compile(
        r"(?<![\w+])(?:"
        r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"
        r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"
        r"|\d{3}[ .-]\d{3}[ .-]\d{4}"
        r")(?![\w-])"
    ),
    accept=_phone_digits_ok,
)


def patterns_for(config: ScrubConfig) -> list[Pattern]:
    """The patterns ``config`` switches on, in the order they run."""
    chosen: list[Pattern] = []
    if config.secrets:
        chosen.extend(SECRETS)
    if config.emails:
        chosen.append(EMAIL)
    if config.phones:
        chosen.append(PHONE)
    return chosen


def redact(text: str, record: Callable[[str, int], None], config: ScrubConfig | None = None) -> str:
    """Apply the built-in scrubbers ``config`` enables to ``text``."""
    for pattern in patterns_for(config or ScrubConfig()):
        text = pattern.sub(text, record)
    return text


@hookimpl
def scrub_message(text: str, record: Callable[[str, int], None], config: ScrubConfig) -> str | None:
    redacted = redact(text, record, config)
    return None if redacted == text else redacted
