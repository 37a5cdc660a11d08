"""Test tooling for plugins and projects built on the lora trainer (not used by production code).

``SECONDS_TO_TRAIN``: overrides that make ``doppelkit persona.user=…`` train a real (tiny)
persona in seconds on a CPU — a 2-layer, 32-wide tiny base, a few pretraining and training
steps, one short sample in the report. Add ``persona.user=…`` and ``home=…``; run with
``OMP_NUM_THREADS=1`` (a model this small trains fastest on one thread).
"""

from __future__ import annotations

SECONDS_TO_TRAIN: tuple[str, ...] = (
    "trainer.tiny.vocab_size=300",
    "trainer.tiny.hidden_size=32",
    "trainer.tiny.intermediate_size=64",
    "trainer.tiny.num_hidden_layers=2",
    "trainer.tiny.num_attention_heads=2",
    "trainer.tiny.num_key_value_heads=1",
    "trainer.tiny.max_position_embeddings=256",
    "trainer.tiny.pretrain_steps=5",
    "trainer.tiny.pretrain_batch_size=4",
    "trainer.max_steps=4",
    "trainer.batch_size=2",
    "trainer.max_seq_len=128",
    "trainer.rank=4",
    "trainer.alpha=8",
    "trainer.report_samples=1",
    "trainer.report_max_new_tokens=4",
)
