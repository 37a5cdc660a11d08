"""Built-in scrubbers: what they redact, what they leave alone, how they are configured."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from doppelkit.builtins import scrubbers
from doppelkit.hookspecs import hookimpl
from doppelkit.models import Message, Thread
from doppelkit.pipeline import scrub_thread
from doppelkit.plugins import scrub
from doppelkit.settings import ScrubConfig

ALL_ON = ScrubConfig(secrets=True, emails=True, phones=True)

SECRETS = {
    "slack_token": [
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxp-1234-5678-91011-abcdef0123456789",
        "xoxa-2-abcdefghijkl",
        "xapp-1-A012ABCD-1234567890-0123456789abcdef",
    ],
    "slack_webhook": ["https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"],
    "aws_access_key": ["AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE"],
    "github_token": [
        "ghp_" + "a1B2" * 9,
        "gho_" + "Z" * 36,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789",
    ],
    "openai_key": ["sk-" + "a1B2" * 12, "sk-proj-" + "Ab1_-" * 10],
    "anthropic_key": ["sk-ant-api03-" + "x" * 40],
    "stripe_key": ["sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "rk_test_" + "abcdefghijklmnop"],
    "google_api_key": ["AIza" + "SyA-1234567890abcdefghijklmnopqrstu"],
    "jwt": ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"],
}


def redact(text: str, config: ScrubConfig = ALL_ON) -> tuple[str, Counter[str]]:
    counts: Counter[str] = Counter()

    def record(kind: str, n: int) -> None:
        counts[kind] += n

    return scrubbers.redact(text, record, config), counts


@pytest.mark.parametrize(("kind", "secret"), [(k, s) for k, values in SECRETS.items() for s in values])
def test_secrets_are_redacted(kind: str, secret: str) -> None:
    text, counts = redact(f"here: {secret} (do not share)")
    assert text == f"here: [REDACTED:{kind}] (do not share)"
    assert counts == {kind: 1}


def test_bearer_tokens_keep_the_header_word() -> None:
    text, counts = redact("curl -H 'Authorization: Bearer abc.DEF-123_456~789+/xyz=' https://api")
    assert text == "curl -H 'Authorization: Bearer [REDACTED:bearer_token]' https://api"
    assert counts == {"bearer_token": 1}


def test_private_key_blocks_are_redacted_whole() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow AKIAIOSFODNN7EXAMPLE\nabc==\n-----END RSA PRIVATE KEY-----"
    text, counts = redact(f"oops:\n```{pem}```\nsorry")
    assert text == "oops:\n```[REDACTED:private_key]```\nsorry"
    assert counts == {"private_key": 1}


def test_a_truncated_private_key_is_redacted_to_the_end() -> None:
    text, _ = redact("key: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA")
    assert text == "key: [REDACTED:private_key]"


@pytest.mark.parametrize(
    "email", ["ann@example.com", "first.last+tag@mail.co.uk", "x_y-z@sub-domain.example.io"]
)
def test_emails(email: str) -> None:
    text, counts = redact(f"write to {email}.")
    assert text == "write to [REDACTED:email]."
    assert counts == {"email": 1}


def test_emails_inside_slack_mailto_links() -> None:
    text, counts = redact("<mailto:ann@example.com|ann@example.com>")
    assert text == "<mailto:[REDACTED:email]|[REDACTED:email]>"
    assert counts == {"email": 2}


@pytest.mark.parametrize(
    "phone",
    [
        "+1 415 555 0100",
        "+44 20 7946 0958",
        "(415) 555-0100",
        "415-555-0100",
        "415.555.0100",
        "+4915112345678",
    ],
)
def test_phones(phone: str) -> None:
    text, counts = redact(f"call {phone} now")
    assert text == "call [REDACTED:phone] now"
    assert counts == {"phone": 1}


@pytest.mark.parametrize(
    "text",
    [
        "released 2024-01-15 at 10:30",
        "version 1.2.3 and v10.20.30",
        "ticket #123456 and PR 4567",
        "ts 1700000000.123456",
        "ip 192.168.100.12",
        "range 1-2-3",
        "mention <@U024BE7LH> in <#C024BE7LR|general>",
        "ask @ann about sk-learn and xoxo hugs",
        "xoxo-hugs-and-kisses-everyone, see sk-this-is-a-long-hyphenated-phrase",
        "the bearer instrumentalization of the plan",
        "price $12,345.67",
        "already [REDACTED:email] and Bearer [REDACTED:bearer_token]",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == (text, Counter())


def test_scrubbing_is_idempotent() -> None:
    once, _ = redact(
        "xoxb-123456789012-abcdefabcdef ann@example.com +1 415 555 0100 Bearer abcdefghijklmnopqrstu9"
    )
    twice, counts = redact(once)
    assert twice == once and not counts


def test_defaults_redact_secrets_and_emails_but_not_phones() -> None:
    text, _ = redact("AKIAIOSFODNN7EXAMPLE ann@example.com 415-555-0100", ScrubConfig())
    assert text == "[REDACTED:aws_access_key] [REDACTED:email] 415-555-0100"


def test_each_group_can_be_switched_off() -> None:
    raw = "AKIAIOSFODNN7EXAMPLE ann@example.com 415-555-0100"
    assert redact(raw, ScrubConfig(secrets=False, emails=False, phones=False))[0] == raw
    assert redact(raw, ScrubConfig(secrets=False, emails=True, phones=False))[0] == (
        "AKIAIOSFODNN7EXAMPLE [REDACTED:email] 415-555-0100"
    )


def test_the_hook_chain_passes_config_only_to_implementations_that_take_it(doppelkit_pm: Any) -> None:
    class Shout:
        @hookimpl
        def scrub_message(self, text: str, record: Any) -> str | None:
            if "secret-word" not in text:
                return None
            record("secret_word", text.count("secret-word"))
            return text.replace("secret-word", "[REDACTED:secret_word]")

    doppelkit_pm.register(Shout())
    counts: Counter[str] = Counter()

    def record(kind: str, n: int) -> None:
        counts[kind] += n

    out = scrub(doppelkit_pm.hook, "secret-word and ann@example.com", record, ScrubConfig(emails=False))
    assert out == "[REDACTED:secret_word] and ann@example.com"
    assert counts == {"secret_word": 1}


def test_scrub_thread_counts_and_keeps_clean_messages(doppelkit_pm: Any) -> None:
    clean = Message(ts="1.0", user="U1", text="nothing here")
    dirty = Message(ts="2.0", user="U1", text="token xoxp-1234-5678-abcdefabcdef")
    thread = Thread(team="T1", channel="C1", ts="1.0", messages=[clean, dirty])
    counts: Counter[str] = Counter()
    out = scrub_thread(thread, doppelkit_pm.hook, counts)
    assert out.messages[0] is clean
    assert out.messages[1].text == "token [REDACTED:slack_token]"
    assert counts == {"slack_token": 1}
