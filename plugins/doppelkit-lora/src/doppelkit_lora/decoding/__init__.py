"""Token-by-token decoding shared by serving and the trainer's sample replies."""
