"""doppelkit-lora: LoRA fine-tuning, the tiny demo model and the persona engine."""
