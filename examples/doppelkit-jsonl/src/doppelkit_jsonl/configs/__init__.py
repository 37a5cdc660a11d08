"""YAML presets of the jsonl plugin (a package, so Hydra finds it as ``pkg://doppelkit_jsonl.configs``)."""
