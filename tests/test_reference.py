"""The data-model reference is generated from the models and cannot drift from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from doppelkit.reference import MODELS, data_model_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "data-model.md"


def test_the_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == data_model_markdown(), (
        "docs/data-model.md is out of date: run `python -m doppelkit.reference > docs/data-model.md`"
    )


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_says_what_it_means(model: type) -> None:
    assert (model.__doc__ or "").strip()
    undescribed = [name for name, info in model.model_fields.items() if not (info.description or "").strip()]
    assert undescribed == [], f"{model.__name__}: give these fields a description: {undescribed}"
