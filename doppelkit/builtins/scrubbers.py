"""Built-in ``scrub_message`` implementations: secrets, emails and phone numbers.

Each match is replaced by ``[REDACTED:<kind>]`` and counted with ``record(kind, n)`` so the
dataset report shows what was removed. The core ``scrub`` config section switches the three
groups (``secrets`` and ``emails`` on by default, ``phones`` off); see
:class:`doppelkit.settings.ScrubConfig`. Patterns run on raw Slack mrkdwn, so they stop at the
``|`` and ``>`` of ``<mailto:…|…>`` links, and they never match a ``[REDACTED:…]`` marker, which
makes scrubbing idempotent (it runs again at serve time).

Speed: ``ingest`` scrubs every message of a workspace, and a dozen regular-expression passes
per message cost more than everything else ingest does. So each pattern has a *trigger*: a
short regular expression with a literal start that finds a piece of text every match of the
pattern contains (``xox…-`` for Slack tokens, ``@`` between address characters for emails).
:func:`candidates` searches the triggers over many texts joined into one string — a few fast
scans instead of a dozen Python calls per message — and only texts a trigger found go through
the patterns (:func:`redact`). A text no trigger finds cannot contain a match, so the result is
exactly what running every pattern on every text gives (a test compares the two on planted
secrets and fuzzed text).
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate

from doppelkit.hookspecs import hookimpl
from doppelkit.settings import ScrubConfig


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


@dataclass(frozen=True)
class Pattern:
    """One kind of sensitive text. With a ``keep`` group, only the text after it is redacted
    (``Bearer [REDACTED:bearer_token]`` still reads as an auth header).

    ``trigger`` finds, in every text where ``regex`` matches, a piece of that match (its
    literal core); it must never match the NUL character :func:`candidates` joins texts with.
    ``None`` means every text is a candidate."""

    kind: str
    regex: re.Pattern[str]
    keep: str | None = None
    accept: Callable[[str], bool] | None = None  # extra check on the matched text
    trigger: re.Pattern[str] | None = None

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
        trigger=re.compile("-----BEGIN "),
    ),
    Pattern(
        "slack_token",
        re.compile(r"\b(?:xox[abposr]|xapp)-[A-Za-z0-9-]{8,}"),
        accept=_has_digit,
        trigger=re.compile(r"x(?:ox[abposr]|app)-"),
    ),
    Pattern(
        "slack_webhook",
        re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]+"),
        trigger=re.compile(r"https://hooks\.slack\.com/"),
    ),
    Pattern("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), trigger=re.compile("A[KS]IA")),
    Pattern(
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
        trigger=re.compile("g(?:h[pousr]_|ithub_pat_)"),
    ),
    Pattern("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}"), trigger=re.compile("sk-ant-")),
    Pattern(
        "openai_key",
        re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
        accept=_has_digit,
        trigger=re.compile("sk-"),
    ),
    Pattern(
        "stripe_key",
        re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"),
        trigger=re.compile("k_(?:live|test)_"),
    ),
    Pattern("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), trigger=re.compile("AIza")),
    Pattern(
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        trigger=re.compile("eyJ"),
    ),
    Pattern(
        "bearer_token",
        re.compile(r"(?P<keep>\bBearer\s+)(?!\[REDACTED)[A-Za-z0-9\-._~+/]{16,}=*", re.IGNORECASE),
        keep="keep",
        accept=_has_digit,
        # The same engine and flag as the pattern: "Bearer" in any case it accepts.
        trigger=re.compile("bearer", re.IGNORECASE),
    ),
)

EMAIL = Pattern(
    "email",
    re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    # An "@" between an address character and a domain character: not the "<@" of a mention.
    trigger=re.compile(r"@(?<=[A-Za-z0-9._%+-]@)[A-Za-z0-9-]"),
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
    # Every form holds a "+" before a digit, or three digits, a separator and four digits.
    trigger=re.compile(r"\+\d|\d{3}[ .-]\d{4}"),
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


@functools.cache
def _compiled(
    secrets: bool, emails: bool, phones: bool
) -> tuple[tuple[Pattern, ...], tuple[re.Pattern[str], ...]]:
    """The enabled patterns and the triggers that find their candidates (cached per switch set)."""
    patterns = tuple(patterns_for(ScrubConfig(secrets=secrets, emails=emails, phones=phones)))
    triggers: dict[str, re.Pattern[str]] = {}
    for pattern in patterns:
        if pattern.trigger is None:  # pragma: no cover - every built-in pattern has one
            return patterns, ()
        triggers.setdefault(pattern.trigger.pattern, pattern.trigger)  # sk- serves two kinds
    return patterns, tuple(triggers.values())


def _setup(config: ScrubConfig | None) -> tuple[tuple[Pattern, ...], tuple[re.Pattern[str], ...]]:
    config = config or ScrubConfig()
    return _compiled(config.secrets, config.emails, config.phones)


def candidates(texts: Sequence[str], config: ScrubConfig | None = None) -> set[int]:
    """The indices of the ``texts`` in which a pattern ``config`` enables may match.

    Every other text comes out of :func:`redact` unchanged (and records nothing), so a caller
    scrubbing many texts runs :func:`redact` on these only. One search per trigger over all the
    texts joined: the triggers never match the NUL joining them, so no match spans two texts
    and every text keeps its own.
    """
    patterns, triggers = _setup(config)
    if not patterns:
        return set()
    if not triggers:  # pragma: no cover - a pattern without a trigger: every text is a candidate
        return set(range(len(texts)))
    if len(texts) == 1:
        return {0} if any(trigger.search(texts[0]) for trigger in triggers) else set()
    joined = "\x00".join(texts)
    starts = list(accumulate((len(text) + 1 for text in texts[:-1]), initial=0))
    found: set[int] = set()
    for trigger in triggers:
        for match in trigger.finditer(joined):
            found.add(bisect_right(starts, match.start()) - 1)
    return found


def redact(text: str, record: Callable[[str, int], None], config: ScrubConfig | None = None) -> str:
    """Apply the built-in scrubbers ``config`` enables to ``text``."""
    patterns, triggers = _setup(config)
    if triggers and not any(trigger.search(text) for trigger in triggers):
        return text  # no pattern can match (see candidates)
    for pattern in patterns:
        text = pattern.sub(text, record)
    return text


@hookimpl
def scrub_message(text: str, record: Callable[[str, int], None], config: ScrubConfig) -> str | None:
    redacted = redact(text, record, config)
    return None if redacted == text else redacted
