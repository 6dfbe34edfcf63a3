"""``harness leaderboard`` (tables and plots from result records) and ``harness figures``."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from harness.api.errors import BadInputError
from harness.cli.defaults import PROFILE
from harness.profiles import DEFAULT_EVALUATORS, ProfileName

#: where the committed leaderboard and its records live (relative to the working directory)
DEFAULT_OUT = Path("leaderboards")
DEFAULT_RESULTS = DEFAULT_OUT / "results"


def leaderboard(
    results: Path = typer.Option(None, "--results", metavar="DIR",
                                 show_default=str(DEFAULT_RESULTS),
                                 help="Folder of result records."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", metavar="DIR",
                             help="Folder that receives the markdown and PNG files (and holds "
                                  "PROTOCOL.json and archive/)."),
    check: bool = typer.Option(False, "--check",
                               help="Write nothing; exit 1 if the files in --out are stale, "
                                    "results/ holds superseded records, or the code's protocol "
                                    "is not the frozen one."),
    freeze: bool = typer.Option(False, "--freeze",
                                help="Write --out/PROTOCOL.json: the protocol fingerprints the "
                                     "code gives now (records made under others are "
                                     "superseded)."),
    archive_superseded: bool = typer.Option(False, "--archive-superseded",
                                            help="Move records not under the frozen protocol "
                                                 "(with their scores) from --results to "
                                                 "--out/archive/, then regenerate."),
    profile: ProfileName = typer.Option(PROFILE, "--profile",
                                        help="--freeze: the profile whose toy VOC and "
                                             "protocol scaling are frozen."),
    evaluator: List[str] = typer.Option(None, "--evaluator", "-e",
                                        help="--freeze: an evaluator to freeze, with its "
                                             "default parameters (repeatable); default: "
                                             "those of the protocol frozen in --out, else "
                                             + " and ".join(DEFAULT_EVALUATORS) + "."),
) -> None:
    """Regenerate leaderboards/ from result records: Table-1 and Table-2 style markdown per
    dataset and protocol, with bootstrap intervals, sweep plots, the archive of superseded
    records and the paper's reported rows. Every record, live or archived, is first checked
    against its own evidence (its per-image scores, its per-class figures, its digest); one
    that disagrees is refused (exit 2), with or without --check."""
    from harness.results.archive import ARCHIVE_DIR
    from harness.results.archive import archive_superseded as move_superseded
    from harness.leaderboard.board import build_leaderboard
    from harness.leaderboard.writing import check_leaderboard, write_leaderboard
    from harness.results.protocol import (PROTOCOL_FILE, code_drift, current_protocol,
                                       read_frozen, write_frozen)
    from harness.results.records import code_info, read_record_files, read_test_scores, utc_now
    from harness.results.verify import verify_record_files

    if sum([check, freeze, archive_superseded]) > 1:
        raise BadInputError("--check, --freeze and --archive-superseded are separate steps; "
                            "give one")
    _check_out_dir(out)
    protocol_path = out / PROTOCOL_FILE
    if freeze:
        earlier = read_frozen(protocol_path) if protocol_path.exists() else None
        if evaluator:
            frozen = current_protocol(profile.value, evaluator)
        elif earlier is not None:   # a refreeze keeps the evaluators, with their parameters
            frozen = current_protocol(profile.value, list(earlier.evaluators),
                                      {n: e.get("params") or {}
                                       for n, e in earlier.evaluators.items()})
        else:
            frozen = current_protocol(profile.value)
        frozen.frozen_at, frozen.commit = utc_now(), code_info().get("git_commit")
        if earlier is not None:     # the protocol's history outlives each freeze
            frozen.notes = list(earlier.notes)
        write_frozen(protocol_path, frozen)
        for name, fp in frozen.fingerprints().items():
            typer.echo(f"froze {name}: {fp[:16]}")
        typer.echo(f"wrote {protocol_path} (profile {frozen.profile}, test seed "
                   f"{frozen.test_seed}); run `harness leaderboard --archive-superseded`")
        return
    if results is None:
        results = DEFAULT_RESULTS
    elif not results.is_dir():
        raise BadInputError(f"{results}: no such folder of result records")
    frozen = read_frozen(protocol_path)
    archive_dir = out / ARCHIVE_DIR
    if archive_superseded:
        if frozen is None:
            raise BadInputError(f"{protocol_path}: no frozen protocol; run `harness "
                                f"leaderboard --freeze` first")
        verify_record_files(read_record_files(results))     # nothing moves if one is refused
        for name, why in move_superseded(results, archive_dir, frozen):
            typer.echo(f"archived {name}: {why}")
    files = read_record_files(results)
    records = [record for _, record in files]
    scores = {record["run_id"]: read_test_scores(path, record) for path, record in files
              if frozen is None or frozen.is_current(record)}
    archived_files = read_record_files(archive_dir)
    # every figure of every record, live or archived, recomputed from its own evidence
    verify_record_files(files, scores)
    verify_record_files(archived_files)
    archived = [record for _, record in archived_files]
    truths = _label_truth(out, records, archived)
    board = build_leaderboard(records, scores={k: v for k, v in scores.items() if v},
                              archived=archived, frozen=frozen, truths=truths)
    if check:
        problems = check_leaderboard(board, out)
        if frozen is not None:
            problems += [f"{protocol_path}: {p}; freeze the new protocol (`harness "
                         f"leaderboard --freeze`) and archive the records it supersedes"
                         for p in code_drift(frozen)]
        if problems:
            for line in problems:
                typer.echo(f"stale: {line}", err=True)
            typer.echo(f"error: {out} is out of date with {results} ({len(problems)} "
                       f"problem(s)); run `harness leaderboard` and commit the result", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date ({len(records)} record(s), {len(archived)} archived)")
        return
    written = write_leaderboard(board, out, may_empty=archive_superseded)
    typer.echo(f"wrote {len(written)} file(s) to {out} from {len(records)} record(s) "
               f"({len(archived)} archived)")


def _label_truth(out: Path, records: list, archived: list) -> dict:
    """Run id -> truth scores of each live record without its own, from ``out``'s
    label-truth evidence (a record with neither reads "not recorded" on the page; `harness
    label-truth --check` lists them); BadInputError (exit 2) if an entry was edited or does
    not pin to its record."""
    from harness.results.label_truth import (DEFAULT_EVIDENCE, check_evidence, read_evidence,
                                             truth_of)

    path = out / DEFAULT_EVIDENCE.relative_to(DEFAULT_EVIDENCE.parents[1])
    entries = read_evidence(path)
    problems, _ = check_evidence(entries, records, archived)
    if problems:
        raise BadInputError(f"{path}: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                        if len(problems) > 1 else ""))
    truths = {r["run_id"]: t for r in records if (t := truth_of(r, entries)) is not None}
    return truths


def _check_out_dir(out: Path) -> None:
    """BadInputError now if a file stands where ``--out`` (or a folder above it) must be a
    folder, rather than an internal error when the first page is written."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == out else f"{p} "
                raise BadInputError(f"--out {out}: {where}is a file, not a folder for the "
                                    f"leaderboard")
            break


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
    from harness.leaderboard import figures as fig

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
