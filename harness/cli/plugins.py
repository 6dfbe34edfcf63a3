"""``harness plugins``: what is installed."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table


def plugins(
    kind: str = typer.Option(None, "--kind", help="Only this kind: repr, labeler, backbone, evaluator, logger."),
) -> None:
    """List the installed plugins: kind, name, distribution and version, description."""
    from harness.api.registry import default_registry

    from harness.api.errors import BadInputError
    from harness.api.interfaces import KIND_CLASSES

    if kind is not None and kind not in KIND_CLASSES:
        raise BadInputError(f"--kind {kind!r}: no such plugin kind; kinds: "
                            f"{', '.join(KIND_CLASSES)}")
    registry = default_registry()
    table = Table(title="harness plugins")
    for col in ("kind", "name", "distribution", "version", "description"):
        table.add_column(col)
    for e in registry.entries(kind):
        table.add_row(e.kind, e.name, e.distribution or e.plugin, e.version, e.description)
    Console(width=200).print(table)
