"""Networks between stages: the backbone shape, the checkpoint format, foreign weights."""
