import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vimi.data.manifest import iter_records, read_index
from vimi.errors import DataError
from vimi.prompt import Image, MultimodalPrompt, Text
from vimi.retrieval import build_index, build_prompts

from .corpora import write_videos

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def index(tmp_path, memory, cfg):
    build_index(memory, tmp_path / "index", cfg)
    return tmp_path / "index"


def read_all(out: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(out / s["file"]) for s in read_index(out)["shards"])


def test_rows_hold_interleaved_prompts_of_the_top_k_hits(tmp_path, videos, index, cfg):
    out = build_prompts(videos, index, tmp_path / "out", cfg, progress=False)
    rows = list(iter_records(out))
    assert [r["id"] for r in rows] == [f"v{i}" for i in range(8)]
    for row in rows:
        name = row["subjects"][0]  # pass-through column of the video row
        prompt = MultimodalPrompt.from_dict(json.loads(row["prompt"]), base_dir=out)
        kinds = [type(s) for s in prompt.segments]
        assert kinds == [
            Text,
            Image,
            Text,
            Image,
            Text,
        ]  # [text_1, <image_1>, text_2, <image_2>, "+ caption"]
        assert prompt.segments[-1].text == f"+ {row['caption']}"
        assert all(Path(s.source).is_file() for s in prompt.segments if isinstance(s, Image))
        assert (out / row["video"]).resolve() == (videos / "clips" / f"{row['id']}.mp4").resolve()
        assert len(row["hit_ids"]) == 2 and row["hit_scores"][0] >= row["hit_scores"][1] > 0
        assert name in prompt.segments[0].text.lower() or row["scene"] in prompt.segments[0].text.lower()
    # Video v0's frames are a copy of memory image blicket-0, the best text match: dropped as leakage.
    # The second example covers the caption's other word ("meadow") instead of another blicket.
    assert "blicket-0" not in rows[0]["hit_ids"] and rows[0]["hit_ids"] == ["blicket-1", "meadow-0"]
    report = json.loads((out / "build_prompts.report.json").read_text())
    assert report["rows"] == 8 and report["hits_dropped_leakage"] == 1 and report["skipped"] == 0
    assert read_index(out)["rows"] == 8


def test_plain_top_k_without_diversification(tmp_path, videos, index, cfg):
    out = build_prompts(videos, index, tmp_path / "out", replace(cfg, diversify=False), progress=False)
    assert next(iter_records(out))["hit_ids"] == ["blicket-1", "blicket-2"]


def test_templates_are_configurable(tmp_path, videos, index, cfg):
    cfg = replace(
        cfg, template="Examples: {examples} Now: {caption}", example_template="<image> shows {text}"
    )
    out = build_prompts(videos, index, tmp_path / "out", cfg, progress=False)
    segments = json.loads(next(iter_records(out))["prompt"])["segments"]
    assert [s["type"] for s in segments] == ["text", "image", "text", "image", "text"]
    assert segments[0]["text"] == "Examples:"
    assert segments[2]["text"] == "shows A photo of a blicket in the desert."
    assert segments[4]["text"].startswith("shows A view of the meadow. Now: A blicket spins")


def test_bad_video_rows_are_skipped_counted_and_listed(tmp_path, memory, index, cfg):
    (tmp_path / "videos" / "clips").mkdir(parents=True)
    (tmp_path / "videos" / "clips" / "broken.mp4").write_bytes(b"\x00" * 100)
    extra = [
        {"id": "v0", "caption": "A blicket again.", "video": "clips/v0.mp4"},
        {"id": "empty", "caption": "  ", "video": "clips/v1.mp4"},
        {"id": "gone", "caption": "A dax.", "video": "clips/missing.mp4"},
        {"id": "broken", "caption": "A wug.", "video": "clips/broken.mp4"},
    ]
    rows = write_videos(
        tmp_path / "videos", memory, extra_rows=[{**r, "subjects": [], "scene": ""} for r in extra]
    )
    # Rewrite captions as raw bytes so that one can be invalid UTF-8 (as from a scraped source).
    table = pa.Table.from_pylist(rows).set_column(
        1, "caption", pa.array([r["caption"].encode() for r in rows[:-1]] + [b"caf\xe9 spins"], pa.binary())
    )
    table = table.set_column(0, "id", pa.array([r["id"] for r in rows[:-1]] + ["badutf"]))
    pq.write_table(table, tmp_path / "videos" / "part-00000.parquet")
    (tmp_path / "videos" / "manifest.json").write_text(
        json.dumps(
            {
                "format": "vimi-manifest",
                "version": 1,
                "shards": [{"file": "part-00000.parquet", "rows": 12}],
                "rows": 12,
            }
        )
    )
    out = build_prompts(tmp_path / "videos", index, tmp_path / "out", cfg, progress=False)
    report = json.loads((out / "build_prompts.report.json").read_text())
    assert report["rows"] == 8 and report["input_rows"] == 12
    assert report["skipped_by_reason"] == {
        "duplicate_id": 1,
        "empty_text": 1,
        "missing_media": 1,
        "non_utf8_text": 1,
    }
    skips = [json.loads(x) for x in (out / "build_prompts.skips.jsonl").read_text().splitlines()]
    assert [s["row"] for s in skips] == [8, 9, 10, 11]
    assert {r["id"] for r in iter_records(out)} == {f"v{i}" for i in range(8)}


def test_unreadable_video_is_a_skip_not_a_crash(tmp_path, memory, index, cfg):
    (tmp_path / "videos" / "clips").mkdir(parents=True)
    (tmp_path / "videos" / "clips" / "broken.mp4").write_bytes(b"\x00" * 100)
    write_videos(
        tmp_path / "videos",
        memory,
        extra_rows=[
            {"id": "broken", "caption": "A wug.", "video": "clips/broken.mp4", "subjects": [], "scene": ""}
        ],
    )
    out = build_prompts(tmp_path / "videos", index, tmp_path / "out", cfg, progress=False)
    report = json.loads((out / "build_prompts.report.json").read_text())
    assert report["skipped_by_reason"] == {"unreadable_video": 1} and report["rows"] == 8


def test_copy_media_puts_every_file_inside_the_output(tmp_path, videos, index, cfg):
    out = build_prompts(videos, index, tmp_path / "out", cfg, copy_media=True, progress=False)
    for row in iter_records(out):
        paths = [row["video"]] + [
            s["path"] for s in json.loads(row["prompt"])["segments"] if s["type"] == "image"
        ]
        assert all(not p.startswith("..") and (out / p).is_file() for p in paths)


def test_another_job_in_the_same_folder_is_refused(tmp_path, videos, index, cfg):
    build_prompts(videos, index, tmp_path / "out", cfg, progress=False)
    with pytest.raises(DataError, match="different build-prompts job"):
        build_prompts(videos, index, tmp_path / "out", replace(cfg, k=3), progress=False)


SLOW_RUN = """
import importlib, sys, time
bp = importlib.import_module("vimi.retrieval.build_prompts")  # the module, not the function it exports
original = bp.process_shard
def slow(*args, **kwargs):
    result = original(*args, **kwargs)
    time.sleep(0.4)
    return result
bp.process_shard = slow
from vimi.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_output(tmp_path, videos, index, cfg):
    args = [
        "build-prompts",
        "--videos",
        str(videos),
        "--index",
        str(index),
        "--k",
        "2",
        "--no-progress",
        "--set",
        "retrieval.shard_size=1",
        "--set",
        "retrieval.threads=1",
    ]
    expected = build_prompts(videos, index, tmp_path / "whole", replace(cfg, shard_size=1), progress=False)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, *args, "--out", str(out)], env=env)
    deadline = time.time() + 60
    while len(list(out.glob("*.done.json"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in out.glob("*.done.json"))
    assert 3 <= len(done_before) < 8 and not (out / "manifest.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("part-*.parquet") if p.with_suffix(".done.json")}
    result = subprocess.run([sys.executable, "-m", "vimi.cli", *args, "--out", str(out)], env=env)
    assert result.returncode == 0
    for name in done_before:  # finished shards were not redone
        shard = out / name.replace(".done.json", ".parquet")
        assert shard.stat().st_mtime_ns == stamps[shard]
    assert read_all(out).equals(read_all(expected))
    for name in ("manifest.json", "build_prompts.report.json", "build_prompts.skips.jsonl"):
        assert (out / name).read_text() == (expected / name).read_text()
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_ray_executor_gives_the_same_output_as_local(tmp_path, videos, index, cfg):
    ray = pytest.importorskip("ray")
    local = build_prompts(videos, index, tmp_path / "local", cfg, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        distributed = build_prompts(
            videos, index, tmp_path / "ray", replace(cfg, executor="ray"), progress=False
        )
    finally:
        ray.shutdown()
    assert read_all(distributed).equals(read_all(local))
    for name in ("manifest.json", "build_prompts.report.json"):
        assert (local / name).read_text() == (distributed / name).read_text()
