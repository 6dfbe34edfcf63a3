"""``harness pretrain`` (filled in by the pretext-training issue)."""
from harness.errors import HarnessError


def pretrain() -> None:
    """Train a backbone on pseudo-labels (not implemented yet)."""
    raise HarnessError("harness pretrain is not implemented yet")
