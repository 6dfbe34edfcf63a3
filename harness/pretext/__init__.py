"""Pretext training: a backbone learns to predict each frame's sound pseudo-label.

``config`` (the settings), ``distributed`` (device, precision, DDP), ``data`` (labels,
split, frame batches), ``train`` (the loop), ``augment``, ``checkpoints``, ``log`` and
``monitor``; :mod:`harness.pretext.train` says how they fit together.
"""
