"""``harness features`` (filled in by the sound-representation issue)."""
from harness.errors import HarnessError


def features() -> None:
    """Compute sound features (not implemented yet)."""
    raise HarnessError("harness features is not implemented yet")
