"""The ``vllm`` engine: persona adapters served by vLLM's multi-LoRA engine (in-process or a server)."""
