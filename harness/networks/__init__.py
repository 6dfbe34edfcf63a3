"""Networks between stages: the backbone shape, the checkpoint format, foreign weights, and
BatchNorm statistics of a network used frozen."""
