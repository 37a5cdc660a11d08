"""The fast scrubbing path lets nothing through that every-pattern-on-every-text catches.

``ingest`` scrubs with :class:`doppelkit.plugins.Scrubber`: the built-in scrubbers' triggers
pick the texts a pattern may match (:func:`doppelkit.builtins.scrubbers.candidates`, one
search over many texts) and only those go through the patterns. Here it is compared with the
scrubbers as they were before (``scrub_reference``, every pattern on every text) on a corpus
of planted secrets in many surroundings and on fuzzed text built from the patterns' own
pieces: same output, same ``record`` calls in the same order, for every ``scrub`` setting.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import scrub_reference

from doppelkit.builtins import scrubbers
from doppelkit.hookspecs import hookimpl
from doppelkit.plugins import Scrubber, get_plugin_manager
from doppelkit.settings import ScrubConfig

CONFIGS = [
    ScrubConfig(secrets=s, emails=e, phones=p) for s, e, p in itertools.product((True, False), repeat=3)
]

SECRETS = [
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "xoxp-1234-5678-91011-abcdef0123456789",
    "xoxa-2-abcdefghijkl",
    "xoxr-abcdefghij",  # no digit: not a token
    "xapp-1-A012ABCD-1234567890-0123456789abcdef",
    "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX",
    "https://hooks.slack.com/workflows/T1/A2/3/abc",
    "AKIAIOSFODNN7EXAMPLE",
    "ASIAIOSFODNN7EXAMPLE",
    "AKIAIOSFODNN7EXAMPL",  # one short
    "ghp_" + "a1B2" * 9,
    "gho_" + "Z" * 36,
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789",
    "sk-" + "a1B2" * 12,
    "sk-proj-" + "Ab1_-" * 10,
    "sk-ant-api03-" + "x" * 40,
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "rk_test_abcdefghijklmnop",
    "AIzaSyA-1234567890abcdefghijklmnopqrstu",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "Authorization: Bearer abc.DEF-123_456~789+/xyz=",
    "BEARER 0123456789abcdefXYZ",
    "bEaReR   zzzzzzzzzzzzzzzz1",
    "Bearer [REDACTED:bearer_token]",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow AKIAIOSFODNN7EXAMPLE\nabc==\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
    "-----BEGIN EC PRIVATE KEY BLOCK-----",
    "ann@example.com",
    "first.last+tag@mail.co.uk",
    "x_y-z@sub-domain.example.io",
    "<mailto:ops@example.org|ops@example.org>",
    "<@U123ABC>ann@example.com",
    "@example.com",
    "ann@localhost",
    "+1 415 555 0100",
    "(415) 555-0100",
    "415-555-0100",
    "415.555.0100",
    "+44 20 7946 0958",
    "2024-01-15",
    "[REDACTED:email]",
]
SURROUNDINGS = [
    "{}",
    "here: {} (do not share)",
    "`{}`",
    "```{}```",
    "<https://example.com|{}>",
    "x{}x",
    "é{}é",
    "ſ{}K",  # letters whose case folds to ASCII (long s, Kelvin sign)
    "İ{}ı",
    "{}\n{}",
    "a\x00{}\x00b",  # NUL inside a message: the joining character of candidates()
    "<@U0ERIK> {}, right?",
    "*{}*",
    "_{}_",
    "{}.",
]


def planted() -> list[str]:
    texts = [s.format(*([secret] * s.count("{}"))) for secret in SECRETS for s in SURROUNDINGS]
    texts += [a + " " + b for a, b in zip(SECRETS, reversed(SECRETS), strict=True)]
    texts += ["", "nothing to see here", "lunch? :taco:", "\x00", "@", "sk-", "xox", "eyJ", "Bearer"]
    return texts


# Fuzz alphabet: the patterns' own pieces, their near misses, separators and other scripts.
PIECES = [
    "sk", "rk", "-", "_", "ant", "proj", "live", "test", "xox", "b", "p", "r", "xapp", "gh", "github_pat",
    "AKIA", "ASIA", "AIza", "eyJ", ".", "Bearer", "bearer", " ", "\n", "\t", "\x00", "@", "<@U1>", "<", ">",
    "|", "mailto:", "https://hooks.slack.com/", "services/", "-----BEGIN ", "RSA ", "PRIVATE KEY",
    "-----", "END ", "+", "(", ")", "0", "1", "42", "415", "555", "0100", "9", "a", "Z", "é", "ſ", "K",
    "İ", "ı", "日本", "🚀", "co", "uk", "io", "[REDACTED:", "]", "=", "~", "/", "%",
]  # fmt: skip


def fuzzed(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = rng.choices(PIECES, k=rng.randint(1, 40))
        if rng.random() < 0.4:  # something long and token-like, of one of the tokens' alphabets
            alphabet = rng.choice(["aB3_-xY9", "aB3xY9", "AKZ079", "abc012.", "A9"])
            token = "".join(rng.choices(alphabet, k=rng.randint(8, 50)))
            parts.insert(rng.randrange(len(parts) + 1), token)
        if rng.random() < 0.3:  # a real secret, mutated: near misses of every pattern
            parts.insert(rng.randrange(len(parts) + 1), mutated(rng.choice(SECRETS), rng))
        out.append("".join(parts))
    return out


def mutated(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(0, 3)):
        at = rng.randrange(len(chars) + 1)
        action = rng.randrange(4)
        if action == 0 and chars[at:]:
            del chars[at]
        elif action == 1:
            chars.insert(at, rng.choice(PIECES))
        elif action == 2 and chars[at:]:
            chars[at] = chars[at].swapcase()
        else:
            chars.insert(at, rng.choice(" \x00-_.@"))
    return "".join(chars)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, kind: str, n: int) -> None:
        self.calls.append((kind, n))


def reference(texts: list[str], config: ScrubConfig) -> tuple[list[str], list[tuple[str, int]]]:
    record = Recorder()
    return [scrub_reference.redact(t, record, config) if t else t for t in texts], record.calls


BUILTINS = get_plugin_manager(load_entrypoints=False).hook


def fast(texts: list[str], config: ScrubConfig, hook: Any = None) -> tuple[list[str], list[tuple[str, int]]]:
    record = Recorder()
    return Scrubber(hook or BUILTINS, config).texts(texts, record), record.calls


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_planted_secrets_are_caught_exactly_as_before(config: ScrubConfig) -> None:
    texts = planted()
    expected = reference(texts, config)
    assert fast(texts, config) == expected
    if config.secrets or config.emails:
        assert expected[1], "the corpus plants things to redact"
    # One text at a time too (serving scrubs live threads message by message).
    record = Recorder()
    assert [scrubbers.redact(t, record, config) if t else t for t in texts] == expected[0]
    assert record.calls == expected[1]


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_fuzzed_text_is_scrubbed_exactly_as_before(config: ScrubConfig) -> None:
    texts = fuzzed(6000)
    expected = reference(texts, config)
    assert fast(texts, config) == expected
    for size in (1, 7, 500):  # however the texts are batched
        got: list[str] = []
        calls: list[tuple[str, int]] = []
        for start in range(0, len(texts), size):
            out, recorded = fast(texts[start : start + size], config)
            got += out
            calls += recorded
        assert (got, calls) == expected
    if config.secrets and config.emails:
        kinds = {kind for kind, _ in expected[1]}
        assert len(kinds) >= 8, f"the fuzz should hit many patterns, hit {sorted(kinds)}"


def test_a_secret_another_plugin_adds_before_the_builtins_is_caught() -> None:
    class Expander:
        """Runs before the built-ins (registered later): turns a code word into a key."""

        @hookimpl
        def scrub_message(self, text: str) -> str | None:
            return text.replace("KEYWORD", "AKIAIOSFODNN7EXAMPLE") if "KEYWORD" in text else None

    pm = get_plugin_manager(load_entrypoints=False, plugins=[Expander()])
    texts = ["nothing", "the KEYWORD here", "plain words"]
    out, calls = fast(texts, ScrubConfig(), hook=pm.hook)
    assert out == ["nothing", "the [REDACTED:aws_access_key] here", "plain words"]
    assert calls == [("aws_access_key", 1)]


def test_triggers_never_match_the_joining_character() -> None:
    """A trigger match spanning two joined texts could hide the next text's own match."""
    for pattern in (*scrubbers.SECRETS, scrubbers.EMAIL, scrubbers.PHONE):
        assert pattern.trigger is not None, pattern.kind
        assert "\x00" not in "".join(m.group(0) for m in pattern.trigger.finditer("\x00".join(PIECES)))
