"""``harness eval`` (filled in by the downstream issue)."""
from harness.errors import HarnessError


def evaluate() -> None:
    """Evaluate a checkpoint on VOC07 (not implemented yet)."""
    raise HarnessError("harness eval is not implemented yet")
