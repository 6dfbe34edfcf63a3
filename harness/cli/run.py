"""``harness run`` and ``harness sweep`` (filled in by the end-to-end issue)."""
from harness.errors import HarnessError


def run() -> None:
    """Run the whole benchmark (not implemented yet)."""
    raise HarnessError("harness run is not implemented yet")


def sweep() -> None:
    """Run a grid of configurations (not implemented yet)."""
    raise HarnessError("harness sweep is not implemented yet")
