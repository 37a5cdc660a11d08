"""The ``peft`` engine: one base, persona adapters on demand, batched streaming replies."""
