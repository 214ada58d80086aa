"""dermablate core: pure PyTorch HAM10000 training, evaluation and interpretation (no Ray)."""
