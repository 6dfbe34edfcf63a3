"""Evaluation: frozen layer features, average precision and the evaluation stage."""
