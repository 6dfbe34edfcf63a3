"""``harness data ...``: build clip datasets (toy world, videos, AudioSet) and toy VOC folders.

    harness data toy --out data/toy --clips 1000 --seed 0
    harness data toy-voc --out data/toy-voc --seed 1
    harness data ingest --videos my_videos/ --out data/clips
    harness data audioset --csv balanced_train_segments.csv --out data/audioset --limit 500
    harness data info data/clips
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from harness.data.audio import Window
from harness.api.errors import BadInputError
from harness.cli.defaults import PROFILE, field_default, param_default
from harness.data import audioset as _audioset
from harness.data import ingest as _ingest
from harness.data.audioset import DownloadConfig
from harness.data.ingest import IngestConfig
from harness.profiles import ProfileName

app = typer.Typer(no_args_is_help=True)


def check_out_folder(out: Path, option: str = "--out") -> Path:
    """``out`` as a folder to write into: BadInputError now if it, or a parent, is a file,
    or if no file can be created there (rather than an OSError once the work has started)."""
    from harness.runtime.bounds import probe_writable

    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"cannot be created, {p} is a file"
                raise BadInputError(f"{option} {out}: {what}, not a folder")
            break
    probe_writable(out, option)
    return out


def _echo_report(ds) -> None:
    report = ds.metadata.get("report", {})
    skipped = {k: v for k, v in report.get("skipped", {}).items() if v}
    typer.echo(f"{ds.root}: {len(ds)} clips from {report.get('videos', '?')} video(s); "
               f"skipped: {', '.join(f'{k} {v}' for k, v in skipped.items()) or 'none'}")


@app.command("toy")
def toy(
    out: Path = typer.Option(..., "--out", help="Folder to write the clip dataset to."),
    clips: Optional[int] = typer.Option(None, "--clips", min=1, help="Number of clips "
                                        "(default: the profile's toy world)."),
    profile: ProfileName = typer.Option(PROFILE, "--profile", help="toy or paper."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed (same seed, same dataset)."),
    image_size: int = typer.Option(64, "--image-size", help="Frame side in pixels (64; 96-112 also work)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Worker processes (default: CPU count)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="World preset: oracle (sound "
                                         "names the objects) or realistic (the audio of real "
                                         "video); see docs/toy-worlds.md. The knobs below "
                                         "change it. Default: the profile's (oracle)."),
    sound_prob: Optional[float] = typer.Option(None, "--sound-prob", help="P(audible | "
                                               "visible object of a sounding class)."),
    silent_classes: Optional[str] = typer.Option(None, "--silent-classes", help="Classes that "
                                                 "never sound, comma-separated, or none."),
    object_gain_db: Optional[str] = typer.Option(None, "--object-gain-db", help="LOW,HIGH: "
                                                 "level of sources over the ambience, dB."),
    offscreen_prob: Optional[float] = typer.Option(None, "--offscreen-prob", help="P(a clip "
                                                   "holds an audible source not in the frame)."),
    narration_prob: Optional[float] = typer.Option(None, "--narration-prob",
                                                   help="P(a narration bed under a clip)."),
    music_prob: Optional[float] = typer.Option(None, "--music-prob",
                                               help="P(a music bed under a clip)."),
    unrelated_prob: Optional[float] = typer.Option(None, "--unrelated-prob", help="P(a clip's "
                                                   "audio is unrelated to its frame)."),
    event_share: Optional[float] = typer.Option(None, "--event-share", help="Mean share of the "
                                                "window a source sounds for (1: all of it)."),
) -> None:
    """Generate the toy audio-visual world as a clip dataset (ground truth in the manifest)."""
    from harness.profiles import get_profile
    from harness.data.toy import generate_clips
    from harness.data.toy.config import world_config

    knobs = {"sound_prob": sound_prob, "silent_classes": silent_classes,
             "object_gain_db": object_gain_db, "offscreen_prob": offscreen_prob,
             "narration_prob": narration_prob, "music_prob": music_prob,
             "unrelated_prob": unrelated_prob, "event_share": event_share}
    world = {**get_profile(profile).toy_world, **({"preset": preset} if preset else {}),
             **{k: v for k, v in knobs.items() if v is not None}}
    try:
        config = world_config(world, image_size=image_size)
    except BadInputError as exc:
        raise BadInputError(f"--preset {preset}: {exc}" if "unknown preset" in str(exc)
                            else str(exc)) from None
    clips = clips if clips is not None else get_profile(profile).toy_clips
    start = time.perf_counter()
    ds = generate_clips(out, clips, seed, config=config, jobs=jobs)
    typer.echo(f"{ds.root}: {len(ds)} toy clips (seed {seed}, {config.preset_label} world) in "
               f"{time.perf_counter() - start:.1f} s")


@app.command("toy-voc")
def toy_voc(
    out: Path = typer.Option(..., "--out", help="Folder to write VOC2007/ into."),
    seed: int = typer.Option(1, "--seed", min=0, help="Random seed (use another than the clips')."),
    test_seed: Optional[int] = typer.Option(None, "--test-seed", min=0,
                                            help="Seed of the test images (default: the "
                                                 "profile's sealed test seed, that of world 0 "
                                                 "of `harness run`; --seed if it seals none)."),
    trainval: Optional[int] = typer.Option(None, "--trainval", min=2, help="trainval images "
                                           "(half train, half val; default: the profile's)."),
    test: Optional[int] = typer.Option(None, "--test", min=1, help="test images (default: "
                                       "the profile's)."),
    profile: ProfileName = typer.Option(PROFILE, "--profile", help="toy or paper."),
    image_size: int = typer.Option(64, "--image-size", help="Image side in pixels."),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Worker processes (default: CPU count)."),
) -> None:
    """Write a toy PASCAL VOC2007 (JPEG, XML with boxes and difficult flags, ImageSets)."""
    from harness.profiles import get_profile
    from harness.data.toy import ToyConfig, generate_voc

    check_out_folder(out)
    prof = get_profile(profile)
    trainval = trainval if trainval is not None else prof.toy_voc_images[0]
    test = test if test is not None else prof.toy_voc_images[1]
    if test_seed is None:
        test_seed = prof.toy_test_seed if prof.toy_test_seed is not None else seed
    start = time.perf_counter()
    voc = generate_voc(out, seed, config=ToyConfig(image_size=image_size), n_trainval=trainval,
                       n_test=test, jobs=jobs, test_seed=test_seed)
    typer.echo(f"{voc}: {trainval} trainval (seed {seed}) + {test} test images (seed "
               f"{test_seed}) in {time.perf_counter() - start:.1f} s")


@app.command("ingest")
def ingest(
    videos: Path = typer.Option(..., "--videos", help="Folder of video files (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="Clip dataset folder (created; rerun to resume)."),
    every: float = typer.Option(field_default(IngestConfig, "every"), "--every", help="Seconds between frames."),
    window: float = typer.Option(field_default(IngestConfig, "window"), "--window-seconds", help="Audio window length, seconds."),
    anchor: Window = typer.Option(Window(field_default(IngestConfig, "anchor")), "--window", help="Frame position in its "
                                  "window: center, or start (the seed's layout)."),
    sample_rate: int = typer.Option(field_default(IngestConfig, "sample_rate"), "--sample-rate", help="Audio sample rate, Hz."),
    size: int = typer.Option(field_default(IngestConfig, "frame_size"), "--size", help="Side of the square frames, pixels."),
    jobs: int = typer.Option(param_default(_ingest.ingest, "jobs"), "--jobs", min=1, help="Videos decoded in parallel."),
) -> None:
    """Cut every video into clips: a frame every --every seconds and its audio window."""
    from harness.data.ingest import ingest as run_ingest

    cfg = IngestConfig(every=every, window=window, anchor=anchor.value, sample_rate=sample_rate,
                       frame_size=size)
    _echo_report(run_ingest(videos, out, cfg, jobs=jobs))


@app.command("audioset")
def audioset(
    csv: Path = typer.Option(..., "--csv", help="AudioSet segment CSV (YTID, start, end, labels)."),
    out: Path = typer.Option(..., "--out", help="Folder for videos/, audioset.json, obtained.csv."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N segments."),
    jobs: int = typer.Option(param_default(_audioset.download, "jobs"), "--jobs", min=1, help="Parallel downloads."),
    retries: int = typer.Option(field_default(DownloadConfig, "retries"), "--retries", min=0, help="Retries of transient failures."),
    backoff: float = typer.Option(field_default(DownloadConfig, "backoff"), "--backoff", min=0.0, help="First retry delay, seconds (doubles)."),
    ytdlp: str = typer.Option(field_default(DownloadConfig, "ytdlp"), "--yt-dlp", help="yt-dlp executable."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also retry segments that "
                                      "failed for good before (unavailable, private)."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Then ingest the downloads "
                                           "into this clip dataset (default options)."),
    ingest_jobs: int = typer.Option(param_default(_ingest.ingest, "jobs"), "--ingest-jobs", min=1, help="Parallel videos for --dataset."),
) -> None:
    """Download AudioSet segments with yt-dlp (resumable); failures are recorded, not fatal."""
    from harness.data.audioset import download, ingest_metadata

    check_out_folder(out)
    if dataset is not None:
        check_out_folder(dataset, "--dataset")
    cfg = DownloadConfig(ytdlp=ytdlp, retries=retries, backoff=backoff)
    summary = download(csv, out, limit=limit, jobs=jobs, config=cfg, retry_failed=retry_failed)
    failed = ", ".join(f"{k} {v}" for k, v in summary["failed"].items() if v) or "none"
    typer.echo(f"{out}: obtained {summary['obtained']} of {summary['requested']} segments; "
               f"failed: {failed} (list: {out / 'audioset.json'})")
    if dataset is not None:
        from harness.data.ingest import ingest as run_ingest

        _echo_report(run_ingest(out / "videos", dataset, jobs=ingest_jobs,
                                extra_metadata=ingest_metadata(summary)))


@app.command("info")
def info(dataset: Path = typer.Argument(..., help="A clip dataset folder.")) -> None:
    """Check a clip dataset and summarise it (every named file must exist)."""
    from harness.data.clips import ClipDataset

    ds = ClipDataset(dataset)
    _echo_report(ds)
    typer.echo(f"generator: {ds.metadata.get('generator', '?')}; extra columns: "
               f"{', '.join(ds.extra_columns) or 'none'}; fingerprint {ds.fingerprint()[:16]}")
