"""`vimi data import-videos`: WebVid's CSV and plain tables, every hidden case counted, resumable after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vimi.cli import main
from vimi.config import load_config
from vimi.data.importers import import_videos
from vimi.data.importers import job as import_job
from vimi.data.manifest import ManifestRows, iter_records, read_index
from vimi.errors import DataError

from .conftest import place, tree_bytes

REPO = Path(__file__).resolve().parents[3]

# (videoid, name, page_dir, which clip file is at VIDEOS/<page_dir>/<videoid>.mp4, the expected skip kind)
WEBVID_ROWS = [
    (b"1001", b'"A man talks on a phone\r\nin a car"', b"p1", "good", None),  # quoted line break: kept
    (b"1002", b"a clip too short to train on", b"p1", "short", "too_short"),
    (b"1003", b"a download cut in half", b"p1", "truncated", "truncated_video"),
    (b"1004", b"a video never downloaded", b"p1", None, "missing_media"),
    (b"1001", b"the first id again", b"p1", None, "duplicate_id"),
    (b"1005", b"un caf\xe9 latin-1", b"p1", "good", "non_utf8_text"),
    (b"1006", b"", b"p1", "good", "empty_text"),
    (b"1007", b"a file that is no video", b"p1", "garbage", "unreadable_video"),
    (b"\xff1008", b"an id that is not UTF-8", b"p1", None, "non_utf8_text"),
    (b"1009", b"Cyclists ride past a bike rack", b"p2", "good", None),
]


def write_webvid(root: Path, clip_files: dict[str, Path]) -> Path:
    """VIDEOS/<page_dir>/<videoid>.mp4 and a WebVid-style CSV with a BOM, CRLF and a malformed line."""
    lines = [b"\xef\xbb\xbfvideoid,contentUrl,duration,page_dir,name"]
    for videoid, name, page_dir, clip, _ in WEBVID_ROWS:
        lines.append(b",".join([videoid, b"https://example.com/v.mp4", b"PT00H00M12S", page_dir, name]))
        if clip is not None:
            place(clip_files[clip], root / "videos" / page_dir.decode() / f"{videoid.decode()}.mp4")
    lines.insert(6, b"1010,https://example.com/v.mp4,PT00H00M12S,p1,a caption,with a comma unquoted")
    table = root / "videos" / "results_2M_val.csv"
    table.write_bytes(b"\r\n".join(lines) + b"\r\n")
    return table


def read_skips(out: Path, name: str = "import_videos") -> list[dict]:
    return [json.loads(line) for line in (out / f"{name}.skips.jsonl").read_text().splitlines()]


def test_webvid_csv_keeps_the_good_rows_and_counts_each_hidden_case(tmp_path, clip_files):
    table = write_webvid(tmp_path, clip_files)
    out = tmp_path / "manifest"
    report = import_videos(table, out, load_config(), progress=False)

    rows = list(iter_records(out))
    assert [(r["id"], r["caption"]) for r in rows] == [
        ("1001", "A man talks on a phone in a car"),
        ("1009", "Cyclists ride past a bike rack"),
    ]
    assert (out / rows[0]["video"]).resolve() == (tmp_path / "videos" / "p1" / "1001.mp4").resolve()
    assert rows[0]["num_frames"] == 12 and (rows[0]["width"], rows[0]["height"]) == (32, 32)
    # Nothing else is lost: every input row is kept or listed with its reason, the malformed line too.
    skips = read_skips(out)
    expected = [
        (row, None if videoid.startswith(b"\xff") else videoid.decode(), kind)
        for row, (videoid, _, _, _, kind) in enumerate(WEBVID_ROWS)
        if kind
    ]
    listed = [(s["row"], s["id"], s["reason"].split(":")[0]) for s in skips if s["row"] is not None]
    assert listed == expected
    malformed = [s for s in skips if s["row"] is None]
    assert len(malformed) == 1 and "line 7" in malformed[0]["reason"]
    assert "with a comma" in malformed[0]["reason"]
    assert "row 0" in next(s["reason"] for s in skips if s["reason"].startswith("duplicate_id"))
    assert report["input_rows"] == len(WEBVID_ROWS) and report["rows"] == 2
    assert report["skipped"] == len(WEBVID_ROWS) - 2 + 1
    assert report["skipped_by_reason"]["non_utf8_text"] == 2
    # The trainer's reader takes the manifest as it is.
    assert len(ManifestRows(out, "video-text", ("caption", "video"))) == 2
    assert read_index(out)["kind"] == "video-text"


def test_plain_jsonl_and_parquet_tables_number_rows_without_ids(tmp_path, clip_files):
    media = tmp_path / "media"
    place(clip_files["good"], media / "clips" / "a.mp4")
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_bytes(
        b"\xef\xbb\xbf"
        + b'{"video": "clips/a.mp4", "caption": "a man in a car"}\n'
        + b'{"video": "clips/a.mp4", "caption": "the same video, another caption"}\n'
        + b"{not json\n"
        + b"[1, 2]\n"
        + b'{"video": "clips/a.mp4", "caption": "caf\xe9"}\n'
        + b"\n"
        + json.dumps({"video": str(clip_files["good"]), "caption": "an absolute path"}).encode()
        + b"\n"
    )
    out = tmp_path / "from_jsonl"
    report = import_videos(jsonl, out, load_config(), media_root=media, progress=False)
    assert [(r["id"], r["caption"]) for r in iter_records(out)] == [
        ("0", "a man in a car"),
        ("1", "the same video, another caption"),
        ("3", "an absolute path"),
    ]
    assert report["skipped_by_reason"] == {"malformed_row": 2, "non_utf8_text": 1}

    parquet = tmp_path / "pairs.parquet"
    table = pa.table({"uid": ["x", "y"], "path": ["clips/a.mp4", "clips/b.mp4"], "text": ["one", "two"]})
    pq.write_table(table, parquet)
    out = tmp_path / "from_parquet"
    report = import_videos(parquet, out, load_config(), media_root=media, progress=False)
    assert [(r["id"], r["caption"]) for r in iter_records(out)] == [("x", "one")]
    assert report["skipped_by_reason"] == {"missing_media": 1}


def test_clips_are_judged_by_the_training_config(tmp_path, clip_files):
    """12 frames hold an 8-frame clip at stride 1 but not at stride 2 (15 frames needed)."""
    place(clip_files["good"], tmp_path / "v.mp4")
    table = tmp_path / "t.csv"
    table.write_text("video,caption\nv.mp4,a clip\n")
    strided = load_config(None, ["data.frame_stride=2"])
    assert import_videos(table, tmp_path / "a", load_config(), progress=False)["rows"] == 1
    report = import_videos(table, tmp_path / "b", strided, progress=False)
    assert report["skipped_by_reason"] == {"too_short": 1}


def test_a_hash_collision_never_drops_a_row(tmp_path, clip_files, monkeypatch):
    monkeypatch.setattr(import_job, "_hash64", lambda item_id: 7)  # every id collides
    place(clip_files["good"], tmp_path / "v.mp4")
    table = tmp_path / "t.csv"
    table.write_text("id,video,caption\na,v.mp4,one\nb,v.mp4,two\na,v.mp4,three\nc,v.mp4,four\n")
    report = import_videos(table, tmp_path / "out", load_config(), progress=False)
    assert [r["id"] for r in iter_records(tmp_path / "out")] == ["a", "b", "c"]
    assert report["skipped_by_reason"] == {"duplicate_id": 1}


def test_bad_command_input_exits_2_with_one_line(tmp_path, clip_files, capsys):
    table = write_webvid(tmp_path, clip_files)
    (tmp_path / "no_videos.csv").write_text("id,caption\n1,a\n")
    (tmp_path / "no_captions.csv").write_text("id,video\n1,a.mp4\n")
    cases = {
        "input table not found": [str(tmp_path / "nope.csv")],
        "--caption-column 'title_en': no such column; the table has videoid, contentUrl": [
            str(table), "--caption-column", "title_en"
        ],
        "no video path column": [str(tmp_path / "no_videos.csv")],
        "no column named caption or name or text or title": [str(tmp_path / "no_captions.csv")],
        "--media-root": [str(table), "--media-root", str(tmp_path / "nowhere")],
        "unknown table format": [str(tmp_path / "videos" / "p1" / "1001.mp4")],
    }  # fmt: skip
    for expected, argv in cases.items():
        code = main(["data", "import-videos", *argv, "--out", str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("vimi data: error:") and err.count("\n") == 1, err
        assert expected in err, err


def test_a_folder_holding_another_import_is_refused(tmp_path, clip_files):
    table = write_webvid(tmp_path, clip_files)
    import_videos(table, tmp_path / "out", load_config(), progress=False)
    other = tmp_path / "other.csv"
    other.write_text("video,caption\nvideos/p1/1001.mp4,a\n")
    with pytest.raises(DataError, match="different import"):
        import_videos(other, tmp_path / "out", load_config(), progress=False)


SLOW_IMPORT = """
import sys, time
from vimi.data.importers.videos import VideoTableMapping
check = VideoTableMapping.check
def slow(self, *args):
    time.sleep(0.3)
    return check(self, *args)
VideoTableMapping.check = slow
from vimi.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_killed_import_rerun_ends_with_the_same_bytes(tmp_path, clip_files):
    table = write_webvid(tmp_path, clip_files)
    settings = ["--set", "importer.shard_size=2", "--set", "importer.threads=1", "--no-progress"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["data", "import-videos", str(table), "--out", str(whole), *settings]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-c", SLOW_IMPORT, "data", "import-videos", str(table), "--out", str(killed)]
    process = subprocess.Popen([*command, *settings], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(killed.glob("*.done.json"))) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = {p.name: p.stat().st_mtime_ns for p in killed.glob("*.done.json")}
    assert 2 <= len(done) < 5 and not (killed / "manifest.json").exists()

    assert main(["data", "import-videos", str(table), "--out", str(killed), *settings]) == 0
    assert {name: (killed / name).stat().st_mtime_ns for name in done} == done  # finished shards not redone
    assert tree_bytes(killed) == tree_bytes(whole)
