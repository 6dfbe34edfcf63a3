"""``harness leaderboard`` and ``harness figures`` (filled in by the end-to-end issue)."""
from harness.errors import HarnessError


def leaderboard() -> None:
    """Regenerate leaderboards/ from result records (not implemented yet)."""
    raise HarnessError("harness leaderboard is not implemented yet")


def figures() -> None:
    """Draw the paper's Figures 1 and 2 (not implemented yet)."""
    raise HarnessError("harness figures is not implemented yet")
