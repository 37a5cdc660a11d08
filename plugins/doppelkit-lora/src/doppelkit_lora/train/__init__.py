"""The ``lora`` trainer: data, packing, the objective, checkpoints, evaluation, publishing."""
