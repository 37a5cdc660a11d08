"""The training/eval objective: next-token cross-entropy on the persona's tokens only.

The language-model head runs only on positions that have a target. Prompts (the conversation
so far) are most of every example and masked out, and the head is one of the largest matmuls
(128k × 4096 for Llama 3), so this skips most of its compute and the memory of full-sequence
logits.
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100


def _decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    """The transformer body and the LM head, when running them separately is equivalent."""
    config = getattr(model, "config", None)
    if getattr(config, "final_logit_softcapping", None):
        return None  # logits are post-processed inside forward (Gemma 2): use the full forward
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None:
        return None
    return decoder, head


def target_logits(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Logits at target positions (``[n, vocab]``, float32) and the targets (``[n]``)."""
    targets = batch["targets"]
    keep = targets != IGNORE_INDEX
    inputs = {
        "input_ids": batch["input_ids"],
        "position_ids": batch["position_ids"],
        # No 2D mask and no cache: transformers then derives a block-diagonal causal mask from
        # the position_ids restarts (packed-sequence detection). A cache would disable that.
        "attention_mask": None,
        "use_cache": False,
    }
    parts = _decoder_and_head(model)
    if parts is None:
        logits = model(**inputs).logits[keep]
    else:
        decoder, head = parts
        hidden = decoder(**inputs).last_hidden_state
        logits = head(hidden[keep])
    return logits.float(), targets[keep]


def loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed cross-entropy over the batch's targets, and how many targets there were."""
    import torch.nn.functional as F

    logits, targets = target_logits(model, batch)
    return F.cross_entropy(logits, targets, reduction="sum"), int(targets.numel())


def per_token_losses(model: Any, batch: dict[str, Any]) -> Any:
    """Cross-entropy of every position (``0`` where there is no target), shape ``[B, L]``."""
    import torch
    import torch.nn.functional as F

    targets = batch["targets"]
    logits, kept = target_logits(model, batch)
    out = torch.zeros(targets.shape, dtype=torch.float32, device=logits.device)
    out[targets != IGNORE_INDEX] = F.cross_entropy(logits, kept, reduction="none")
    return out
