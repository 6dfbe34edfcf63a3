"""``harness leaderboard`` (tables and plots from result records) and ``harness figures``."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.errors import BadInputError

#: where the committed leaderboard and its records live (relative to the working directory)
DEFAULT_OUT = Path("leaderboards")
DEFAULT_RESULTS = DEFAULT_OUT / "results"


def leaderboard(
    results: Path = typer.Option(None, "--results", metavar="DIR",
                                 show_default=str(DEFAULT_RESULTS),
                                 help="Folder of result records."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", metavar="DIR",
                             help="Folder that receives the markdown and PNG files."),
    check: bool = typer.Option(False, "--check",
                               help="Write nothing; exit 1 if the files in --out are stale."),
) -> None:
    """Regenerate leaderboards/ from result records: Table-1 and Table-2 style markdown per
    dataset and protocol, sweep plots, and the paper's reported rows."""
    from harness.leaderboard import build_leaderboard, check_leaderboard, write_leaderboard
    from harness.records import read_records

    if results is None:
        results = DEFAULT_RESULTS
    elif not results.is_dir():
        raise BadInputError(f"{results}: no such folder of result records")
    records = read_records(results)
    board = build_leaderboard(records)
    if check:
        problems = check_leaderboard(board, out)
        if problems:
            for line in problems:
                typer.echo(f"stale: {line}", err=True)
            typer.echo(f"error: {out} is out of date with {results} ({len(problems)} file(s)); "
                       f"run `harness leaderboard` and commit the result", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date ({len(records)} record(s))")
        return
    written = write_leaderboard(board, out)
    typer.echo(f"wrote {len(written)} file(s) to {out} from {len(records)} record(s)")


def figures(
    data: Path = typer.Option(..., "--data", metavar="DIR", help="Clip dataset folder."),
    labels: Path = typer.Option(None, "--labels", metavar="FILE",
                                help="Pseudo-labels .npy, one per clip (Figure 1)."),
    checkpoint: str = typer.Option(None, "--checkpoint", metavar="SPEC",
                                   help="Checkpoint .pt or random:<backbone> (Figure 2)."),
    units: str = typer.Option("0,1,2,3,4,5", "--units",
                              help="Comma-separated conv3 unit indices (Figure 2)."),
    out: Path = typer.Option(Path("figures"), "--out", metavar="DIR",
                             help="Folder that receives the PNG files."),
    per_cluster: int = typer.Option(16, "--per-cluster", min=1,
                                    help="Frames shown per cluster (Figure 1)."),
    max_clusters: int = typer.Option(None, "--max-clusters", min=1,
                                     help="Draw only the largest N clusters (Figure 1)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Which frames of a cluster are shown."),
    device: str = typer.Option(None, "--device", show_default="cuda if available, else cpu",
                               help="Device for Figure 2's forward passes."),
) -> None:
    """Draw Figure 1 (frames grouped by sound cluster) and/or Figure 2 (the 9 frames that
    activate chosen conv3 units of a checkpoint most) as PNG files."""
    from harness import figures as fig

    if labels is None and checkpoint is None:
        raise BadInputError("give --labels (Figure 1), --checkpoint (Figure 2), or both")
    written = []
    if labels is not None:
        written += fig.figure1(data, labels, out, per_cluster=per_cluster,
                               max_clusters=max_clusters, seed=seed)
    if checkpoint is not None:
        written += fig.figure2(data, checkpoint, fig.parse_units(units), out, device=device)
    for path in written:
        typer.echo(str(path))
