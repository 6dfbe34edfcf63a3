"""Pretext training: a backbone learns to predict each frame's sound pseudo-label."""
