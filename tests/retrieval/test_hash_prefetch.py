"""build-prompts hashes videos and hit images ahead in a thread pool: same rows, same drops, no extra hashing."""

import json
from dataclasses import replace

from PIL import Image

from vimi.data.manifest import iter_records
from vimi.retrieval import build_index, build_prompts
from vimi.retrieval.filters import HitFilter, image_hash
from vimi.retrieval.sharded import Hit

from .corpora import pattern


def hit(row, text, image, score):
    return Hit(row, f"m{row}", text, image, score)


def test_images_to_hash_are_exactly_the_images_select_hashes(tmp_path):
    paths = []
    for seed in range(5):
        paths.append(str(tmp_path / f"{seed}.png"))
        Image.fromarray(pattern(seed)).save(paths[-1])
    hits = [
        hit(0, "a dax", paths[0], 9.0),
        hit(1, "A  DAX", paths[1], 8.0),  # duplicate text: dropped before hashing
        hit(2, "a wug", paths[0], 7.0),  # duplicate image
        hit(3, "a wug", paths[2], 6.0),
        hit(4, "a fep", paths[3], 5.0),
        hit(5, "weak", paths[4], 0.1),  # below min_score
    ]
    for diversify in (False, True):
        hashed: list[str] = []

        def recording_hash(path, hashed=hashed):
            hashed.append(path)
            return image_hash(path)

        hit_filter = HitFilter(k=2, min_score=1.0)
        terms = ({"dax", "wug", "fep"}, str.split) if diversify else (None, None)
        hit_filter.select(hits, [], *terms, hash_image=recording_hash)
        assert hit_filter.images_to_hash(hits, diversify) == hashed
        assert hashed == ([paths[0], paths[2], paths[3]] if diversify else [paths[0], paths[2]])


def test_prefetch_keeps_rows_leakage_and_unreadable_images_identical_across_pool_sizes(
    tmp_path, memory, videos, cfg
):
    index = build_index(memory, tmp_path / "index", cfg).parent
    (memory / "images" / "blicket-2.png").write_bytes(b"not a png")  # a hit of several captions
    outs = {}
    for threads in (1, 3):
        outs[threads] = build_prompts(
            videos, index, tmp_path / f"out{threads}", replace(cfg, threads=threads), progress=False
        )
    for name in (
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
        "build_prompts.report.json",
    ):
        assert (outs[1] / name).read_bytes() == (outs[3] / name).read_bytes(), name
    first = next(iter_records(outs[3]))
    assert first["id"] == "v0" and "blicket-0" not in first["hit_ids"]  # v0's frames copy blicket-0
    report = json.loads((outs[3] / "build_prompts.report.json").read_text())
    assert report["hits_dropped_leakage"] == 1  # blicket-0, a frame of video v0, stays out of its prompt
    assert report["hits_dropped_unreadable_image"] >= 1
    assert report["skipped_by_reason"].get("unreadable_image", 0) >= 1
    skips = [json.loads(line) for line in (outs[3] / "build_prompts.skips.jsonl").read_text().splitlines()]
    assert {s["id"] for s in skips if s["where"] == "memory"} == {"blicket-2"}
