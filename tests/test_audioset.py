"""`harness data audioset`, driven offline by a stand-in yt-dlp executable on PATH.

The stand-in records its arguments, then (by video ID, from a plan file) writes a real
generated video where yt-dlp would, or fails the way yt-dlp does: unavailable, private,
rate-limited (always, or twice then fine), other errors, success without a file.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.data.audioset import (DownloadConfig, classify_failure, download, parse_segments)
from harness.data.clips import ClipDataset
from harness.api.errors import BadInputError, HarnessError

REPO = Path(__file__).resolve().parents[1]

FAKE = """#!{python}
import json, os, sys
sys.path.insert(0, {repo!r})
args = sys.argv[1:]
with open(os.environ["FAKE_YTDLP_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
url = args[args.index("--") + 1]
ytid = url.split("watch?v=")[1]
template = args[args.index("--output") + 1]
lo, hi = (float(x) for x in args[args.index("--download-sections") + 1][1:].split("-"))
plan_path = os.environ["FAKE_YTDLP_PLAN"]
behaviour = json.load(open(plan_path)).get(ytid, "ok")
count_file = plan_path + "." + ytid
calls = int(open(count_file).read()) + 1 if os.path.exists(count_file) else 1
open(count_file, "w").write(str(calls))
if behaviour == "flaky":
    behaviour = "ratelimit" if calls <= 2 else "ok"
errors = {{
    "unavailable": "ERROR: [youtube] " + ytid + ": Video unavailable. This video has been removed by the uploader",
    "private": "ERROR: [youtube] " + ytid + ": Private video. Sign in if you've been granted access",
    "ratelimit": "ERROR: unable to download video data: HTTP Error 429: Too Many Requests",
    "other": "ERROR: Postprocessing: ffmpeg exited with code 1",
}}
if behaviour == "ok":
    from tests.media import write_video
    write_video(template.replace("%(ext)s", "mp4"), min(hi - lo, 8.0), size=(32, 24), fps=5)
    sys.exit(0)
if behaviour == "nofile":
    sys.exit(0)
open(template.replace("%(ext)s", "mp4.part"), "w").write("partial")
print(errors[behaviour], file=sys.stderr)
sys.exit(1)
"""

PLAN = {
    "-okvideo001": "ok", "flakyvideo1": "flaky", "unavail0001": "unavailable",
    "private0001": "private", "ratelimit01": "ratelimit", "otherfail01": "other",
    "nofile00001": "nofile",
}

CSV = """# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=7, num_segs=7, num_unique_labels=3, num_positive_labels=9
# YTID, start_seconds, end_seconds, positive_labels
-okvideo001, 30.000, 38.000, "/m/09x0r,/m/04rlf"
flakyvideo1, 0.000, 8.000, "/m/0jbk"
unavail0001, 10.000, 20.000, "/m/09x0r"
private0001, 10.000, 20.000, "/m/09x0r"
ratelimit01, 10.000, 20.000, "/m/09x0r"
otherfail01, 10.000, 20.000, "/m/09x0r"
nofile00001, 10.000, 20.000, "/m/09x0r"
"""


@pytest.fixture
def fake_ytdlp(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "yt-dlp"
    exe.write_text(FAKE.format(python=sys.executable, repo=str(REPO)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_YTDLP_PLAN", str(plan))
    monkeypatch.setenv("FAKE_YTDLP_LOG", str(log))
    csv = tmp_path / "segments.csv"
    csv.write_text(CSV)

    def calls():
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    return csv, calls


def _ids(calls):
    return [args[args.index("--") + 1].split("v=")[1] for args in calls]


def test_parse_segments(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text(CSV + "-okvideo001, 30.000, 38.000, \"/m/09x0r\"\n")  # duplicate: once
    segs = parse_segments(csv)
    assert [s.ytid for s in segs] == list(PLAN)
    assert segs[0].ytid == "-okvideo001" and segs[0].start == 30.0 and segs[0].end == 38.0
    assert segs[0].labels == ("/m/09x0r", "/m/04rlf") and segs[0].name == "-okvideo001_30000_38000"


@pytest.mark.parametrize("row, message", [
    ('short, 1.0, 2.0, "/m/x"', "invalid YouTube ID 'short'"),
    ('abc;rm -rf/, 1.0, 2.0, "/m/x"', "invalid YouTube ID"),
    ('-okvideo001, 5.0, 2.0, "/m/x"', "bad time range"),
    ('-okvideo001, soon, 2.0, "/m/x"', "not numbers"),
    ("-okvideo001, 1.0, 2.0", "expected 4 fields"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    csv = tmp_path / "s.csv"
    csv.write_text("# a\n# b\n# c\n" + row + "\n")
    with pytest.raises(BadInputError, match=message) as err:
        parse_segments(csv)
    assert "s.csv:4" in str(err.value)
    with pytest.raises(BadInputError, match="no such segment CSV"):
        parse_segments(tmp_path / "none.csv")


@pytest.mark.parametrize("stderr, kind", [
    ("ERROR: [youtube] x: Video unavailable", "unavailable"),
    ("ERROR: [youtube] x: This video is not available in your country", "unavailable"),
    ("ERROR: [youtube] x: Private video. Sign in if you've been granted access", "private"),
    ("ERROR: unable to download: HTTP Error 429: Too Many Requests", "rate_limited"),
    ("ERROR: Sign in to confirm you’re not a bot", "rate_limited"),
    ("ERROR: ffmpeg exited with code 1", "other"),
    ("", "other"),
])
def test_classify_failure(stderr, kind):
    assert classify_failure(stderr) == kind


def test_download_classifies_retries_and_records(fake_ytdlp, tmp_path):
    csv, calls = fake_ytdlp
    delays = []
    out = tmp_path / "as"
    summary = download(csv, out, jobs=3, config=DownloadConfig(retries=2, backoff=1.0),
                       progress=False, sleep=delays.append)
    assert summary["requested"] == 7 and summary["obtained"] == 2
    assert summary["failed"] == {"unavailable": 1, "private": 1, "rate_limited": 1, "other": 2}
    assert [s["ytid"] for s in summary["segments"]] == ["-okvideo001", "flakyvideo1"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == [
        "-okvideo001_30000_38000.mp4", "flakyvideo1_0_8000.mp4"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".audioset"] == []
    ids = _ids(calls())
    # permanent failures are not retried; transient ones are, up to the limit
    assert ids.count("unavail0001") == ids.count("private0001") == ids.count("-okvideo001") == 1
    assert ids.count("flakyvideo1") == 3 and ids.count("ratelimit01") == 3
    assert ids.count("otherfail01") == 3 and ids.count("nofile00001") == 3
    assert len(delays) == 2 + 2 + 2 + 2  # flaky, ratelimit, other, nofile: 2 waits each
    assert all(0.75 <= d <= 1.25 or 1.5 <= d <= 2.5 for d in delays) and max(delays) > 1.25
    for args in calls():  # an argument list: the ID after "--", only the segment's range
        assert args[args.index("--") - 1] != "--" and args[-2] == "--"
        assert args[args.index("--download-sections") + 1] in ("*30.000-38.000", "*0.000-8.000",
                                                                 "*10.000-20.000")
    saved = json.loads((out / "audioset.json").read_text())
    assert saved["obtained"] == 2 and saved["csv"] == "segments.csv"
    failures = {f["ytid"]: f["reason"] for f in saved["failures"]}
    assert failures["private0001"] == "private" and failures["nofile00001"] == "other"
    obtained = parse_segments(out / "obtained.csv")
    assert [s.ytid for s in obtained] == ["-okvideo001", "flakyvideo1"]
    assert obtained[0].labels == ("/m/09x0r", "/m/04rlf")


def test_resume_and_retry_failed(fake_ytdlp, tmp_path):
    csv, calls = fake_ytdlp
    out = tmp_path / "as"
    cfg = DownloadConfig(retries=0, backoff=0.0)
    download(csv, out, limit=4, jobs=2, config=cfg, progress=False, sleep=lambda s: None)
    first = _ids(calls())
    assert set(first) == {"-okvideo001", "flakyvideo1", "unavail0001", "private0001"}
    summary = download(csv, out, limit=4, jobs=2, config=cfg, progress=False)
    second = _ids(calls())[len(first):]
    assert second == ["flakyvideo1"]  # only the transient failure is tried again
    assert summary["obtained"] == 1 and summary["failed"]["unavailable"] == 1
    download(csv, out, limit=4, jobs=2, config=cfg, progress=False, retry_failed=True)
    third = _ids(calls())[len(first) + 1:]
    assert sorted(third) == ["flakyvideo1", "private0001", "unavail0001"]


def test_missing_ytdlp_is_a_clear_error(tmp_path, monkeypatch):
    csv = tmp_path / "s.csv"
    csv.write_text(CSV)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(HarnessError, match=r"yt-dlp not found.*harness\[download\]"):
        download(csv, tmp_path / "o", config=DownloadConfig(), progress=False)


def test_cli_downloads_then_ingests(fake_ytdlp, tmp_path):
    from harness.cli import app

    csv, calls = fake_ytdlp
    out, ds_dir = tmp_path / "as", tmp_path / "clips"
    result = CliRunner().invoke(app, ["data", "audioset", "--csv", str(csv), "--out", str(out),
                                      "--limit", "3", "--backoff", "0", "--retries", "2",
                                      "--dataset", str(ds_dir)])
    assert result.exit_code == 0, result.output
    assert "obtained 2 of 3 segments; failed: unavailable 1" in result.output
    ds = ClipDataset(ds_dir)
    assert len(ds) == 4  # two 8 s segments, two centred 3.75 s windows each
    assert ds.metadata["audioset"]["obtained_ids"] == ["-okvideo001:30", "flakyvideo1:0"]
    assert {c.video for c in ds.clips} == {"-okvideo001_30000_38000.mp4", "flakyvideo1_0_8000.mp4"}
    result = CliRunner().invoke(app, ["data", "audioset", "--csv", str(tmp_path / "nope.csv"),
                                      "--out", str(out)])
    assert result.exit_code == 2 and "no such segment CSV" in result.output
