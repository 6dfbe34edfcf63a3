"""``harness label-truth``: the truth scores of sound records made before runs kept them."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from harness.api.errors import BadInputError
from harness.results.label_truth import DEFAULT_EVIDENCE


def label_truth(
    results: List[Path] = typer.Option(
        None, "--results", metavar="DIR", show_default="leaderboards/results",
        help="A folder of result records that must all have their scores (repeatable)."),
    archive: List[Path] = typer.Option(
        None, "--archive", metavar="DIR", show_default="leaderboards/archive",
        help="A folder of archived records: scored where this code rebuilds their labels, "
             "reported and skipped where it does not (repeatable)."),
    evidence: Path = typer.Option(DEFAULT_EVIDENCE, "--evidence", metavar="FILE",
                                  help="The evidence file to read and update."),
    check: bool = typer.Option(False, "--check",
                               help="Write nothing; exit 2 if an entry does not pin to its "
                                    "record or was edited, 1 if a --results sound record "
                                    "has no entry."),
    run: List[str] = typer.Option(None, "--run", metavar="RUN_ID",
                                  help="Only this run (repeatable)."),
    recompute: bool = typer.Option(False, "--recompute",
                                   help="Rebuild existing entries too, and refuse one whose "
                                        "rebuilt scores differ from it."),
) -> None:
    """Score the pseudo-labels of sound records that predate the labels stage's truth
    scores against the toy clips' true objects (NMI, purity), rebuilding each record's
    labels through the run's own stages (cached under $HARNESS_CACHE), and keep the scores
    in an evidence file pinned to each record; records are never rewritten. A rebuild that
    does not give the labels a --results record used is refused (exit 2)."""
    from harness.results.label_truth import check_evidence, read_evidence, regenerate
    from harness.results.records import read_record_files

    board = DEFAULT_EVIDENCE.parents[1]
    folders = {"--results": results or [board / "results"],
               "--archive": archive or ([] if results else [board / "archive"])}
    for option, paths in folders.items():
        for folder in paths:
            if not folder.is_dir():
                raise BadInputError(f"{option} {folder}: no such folder of result records")
    live, archived = ([record for folder in folders[option] for _, record in
                       read_record_files(folder)] for option in ("--results", "--archive"))
    if check:
        problems, missing = check_evidence(read_evidence(evidence), live, archived)
        if problems:
            raise BadInputError(f"{evidence}: {problems[0]}"
                                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        if missing:
            typer.echo(f"{evidence}: {len(missing)} sound record(s) without an entry (first: "
                       f"{missing[0]}); run `harness label-truth`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{evidence}: up to date")
        return
    counts = regenerate(evidence, live, archived, only=run or (), recompute=recompute,
                        echo=typer.echo)
    typer.echo(f"{evidence}: {counts['made']} made, {counts['kept']} kept, "
               f"{counts['confirmed']} confirmed by rebuilding, {counts['refused']} archived "
               f"record(s) not rebuilt")
