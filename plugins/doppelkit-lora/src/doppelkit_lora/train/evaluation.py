"""Evaluation: held-out loss, style statistics, memorisation — and the persona report.

The persona report answers "does the adapter sound like them, without parroting them?":

* held-out loss / perplexity of the base model and of the adapter on threads never trained on;
* style statistics (length, emoji, punctuation) of sampled replies vs the person's real ones;
* the verbatim-memorisation rate: the share of sampled replies that reproduce at least
  ``MEMORISED_CHARS`` consecutive characters of some training response.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from doppelkit_lora.train.objective import loss_sum
from doppelkit_lora.train.packing import PackedRow, collate

MEMORISED_CHARS = 50
# Unicode pictographs and Slack's :shortcode: emoji (exports keep emoji as shortcodes).
EMOJI = re.compile("[\U0001f1e6-\U0001f1ff\U0001f300-\U0001faff\u2600-\u27bf\u2b50\u2b55]|:[a-z0-9_+'-]+:")


def eval_loss(
    model: Any, rows: Sequence[PackedRow], batch_size: int, pad_id: int, device: str
) -> float | None:
    """Mean per-token loss over all targets of ``rows`` (``None`` without rows)."""
    import torch

    if not rows:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(rows[start : start + batch_size], pad_id).items()}
            loss, n = loss_sum(model, batch)
            total += float(loss)
            count += n
    model.train(was_training)
    return total / count if count else None


def perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(min(loss, 50.0))


def style_stats(texts: Sequence[str]) -> dict[str, float]:
    """Per-message averages that characterise how someone writes."""
    n = len(texts)
    if n == 0:
        return {}
    emoji = sum(len(EMOJI.findall(t)) for t in texts)
    return {
        "messages": n,
        "chars": round(sum(len(t) for t in texts) / n, 1),
        "words": round(sum(len(t.split()) for t in texts) / n, 1),
        "emoji": round(emoji / n, 3),
        "exclamations": round(sum(t.count("!") for t in texts) / n, 3),
        "questions": round(sum(t.count("?") for t in texts) / n, 3),
        "ends_with_period": round(sum(t.rstrip().endswith(".") for t in texts) / n, 3),
        "starts_lowercase": round(sum(t[:1].islower() for t in texts) / n, 3),
    }


class MemorisationIndex:
    """Every ``MEMORISED_CHARS``-long window of the training responses, for exact lookups."""

    def __init__(self, responses: Iterable[str], width: int = MEMORISED_CHARS) -> None:
        self.width = width
        self.windows = {
            r[i : i + width] for r in responses if len(r) >= width for i in range(len(r) - width + 1)
        }

    def memorised(self, text: str) -> bool:
        w = self.width
        return any(text[i : i + w] in self.windows for i in range(len(text) - w + 1))

    def rate(self, texts: Sequence[str]) -> float | None:
        return sum(self.memorised(t) for t in texts) / len(texts) if texts else None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_persona_report(report: dict[str, Any], console: Any) -> None:
    """The persona report as rich tables: losses, style, memorisation, and sample replies."""
    from rich.table import Table

    persona = report.get("persona", "")
    ev = report["eval"]
    table = Table(title=f"Persona report — {persona}")
    table.add_column("metric", style="bold")
    table.add_column("base model", justify="right")
    table.add_column("adapter", justify="right")
    table.add_column("their real replies", justify="right")
    split = "held-out" if ev["split"] == "held-out" else "training-set"
    table.add_row(f"{split} loss", _fmt(ev["base_loss"]), _fmt(ev["adapter_loss"]), "")
    table.add_row(
        f"{split} perplexity", _fmt(ev["base_perplexity"], 2), _fmt(ev["adapter_perplexity"], 2), ""
    )
    style = report["style"]
    labels = {
        "chars": "reply length (chars)",
        "words": "reply length (words)",
        "emoji": "emoji per reply",
        "exclamations": "'!' per reply",
        "questions": "'?' per reply",
        "ends_with_period": "share ending with '.'",
        "starts_lowercase": "share starting lowercase",
    }
    for key, label in labels.items():
        table.add_row(
            label,
            _fmt(style["base"].get(key), 2),
            _fmt(style["adapter"].get(key), 2),
            _fmt(style["real"].get(key), 2),
        )
    mem = report["memorisation"]
    table.add_row(
        f"verbatim ≥{mem['threshold_chars']} chars copied",
        _fmt(mem["base_rate"], 2),
        _fmt(mem["adapter_rate"], 2),
        "",
    )
    console.print(table)
    tr = report["train"]
    console.print(
        f"trained {tr['steps']} steps ({tr['train_tokens']} target tokens, "
        f"{_fmt(tr['tokens_per_second'], 0)} tokens/s on {tr['device']}, {tr['dtype']}); "
        f"best eval at step {_fmt(tr['best_step'])}" + ("; stopped early" if tr["stopped_early"] else "")
    )


def print_samples(samples: Sequence[dict[str, str]], persona: str, console: Any) -> None:
    from rich.table import Table

    if not samples:
        return
    table = Table(title=f"Sample replies — {persona} (adapter) vs what they really said", show_lines=True)
    table.add_column("conversation so far (last message)", ratio=2)
    table.add_column(f"{persona} (adapter)", ratio=2)
    table.add_column("real reply", ratio=2)
    for sample in samples:
        table.add_row(sample["prompt"], sample["adapter"], sample["real"])
    console.print(table)
