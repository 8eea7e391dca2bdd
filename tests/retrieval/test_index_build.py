"""The map-reduce index build: duplicate ids across shards, and Ray tasks writing what the local run writes."""

import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import vimi.retrieval.corpus as corpus
from vimi.config import RetrievalConfig
from vimi.data.manifest import ManifestWriter
from vimi.retrieval import build_index, open_index
from vimi.retrieval.corpus import find_duplicate_rows

QUERIES = ["red fox", "blue dog runs", "zorblax", "fox number 7", "nothing here"]


def memory_with_repeats(root, n: int = 60):
    """Rows m0..m{n-1} (input shards of 8 rows) where every 7th row repeats the id of the row 10 before it
    and row 3 has an id but a missing image; returns the rows."""
    root.mkdir(parents=True)
    Image.new("RGB", (8, 8), (10, 200, 10)).save(root / "img.png")
    words = ["red", "blue", "fox", "dog", "runs", "zorblax"]
    rows = [
        {"id": f"m{i}", "text": f"{words[i % 6]} {words[(i * 5) % 6]} number {i}", "image": "img.png"}
        for i in range(n)
    ]
    for i in range(14, n, 7):
        rows[i]["id"] = rows[i - 10]["id"]
    rows[3]["image"] = "missing.png"
    with ManifestWriter(root, shard_size=8) as writer:
        writer.write_many(rows)
    return rows


def test_duplicate_rows_are_the_later_repeats_of_an_id(tmp_path):
    rows = memory_with_repeats(tmp_path / "memory")
    expected = {i for i in range(14, len(rows), 7)}
    assert find_duplicate_rows(tmp_path / "memory") == expected


def test_duplicate_rows_survive_hash_collisions(tmp_path, monkeypatch):
    """Every id hashing alike must not make distinct ids duplicates: candidates are compared by id."""
    rows = memory_with_repeats(tmp_path / "memory")
    monkeypatch.setattr(corpus, "_id_hash", lambda item_id: 7)
    assert find_duplicate_rows(tmp_path / "memory") == {i for i in range(14, len(rows), 7)}


@pytest.mark.parametrize("num_shards", [3, 7])
def test_sharded_build_with_repeated_ids_equals_one_shard(tmp_path, num_shards):
    """A repeat in a later shard is dropped like a repeat in the same shard: same rows, scores, report."""
    rows = memory_with_repeats(tmp_path / "memory")
    build_index(tmp_path / "memory", tmp_path / "one", RetrievalConfig(num_shards=1), progress=False)
    build_index(
        tmp_path / "memory", tmp_path / "many", RetrievalConfig(num_shards=num_shards), progress=False
    )
    one, many = open_index(tmp_path / "one", threads=1), open_index(tmp_path / "many", threads=1)
    assert not list(tmp_path.rglob("term_counts.npz"))  # the map tasks' hand-over files are gone
    skipped = {3, *range(14, len(rows), 7)}
    assert one.num_rows == many.num_rows == len(rows) - len(skipped)
    (s1, r1), (s2, r2) = one.search(QUERIES, 6), many.search(QUERIES, 6)
    assert np.array_equal(s1, s2) and np.array_equal(r1, r2)
    kept_ids = [r["id"] for i, r in enumerate(rows) if i not in skipped]
    assert [h.id for h in many.hits(["zorblax"], 50)[0]] == [
        i for i in kept_ids if "zorblax" in rows[int(i[1:])]["text"]
    ]
    report = (tmp_path / "many" / "index.skips.jsonl").read_text()
    assert report == (tmp_path / "one" / "index.skips.jsonl").read_text()
    lines = [json.loads(x) for x in report.splitlines()]
    assert [x["row"] for x in lines] == sorted(skipped)
    assert lines[1]["reason"] == "duplicate_id: m4 appears in an earlier row"


def read_shard_files(index_dir) -> dict[str, bytes]:
    """Every file of the index but the report (whose corpus path is the same) by relative path."""
    return {
        str(p.relative_to(index_dir)): p.read_bytes()
        for p in sorted(index_dir.rglob("*"))
        if p.is_file() and p.suffix != ".arrow"
    }


@pytest.mark.slow
def test_ray_tasks_write_the_same_index_as_local(tmp_path):
    ray = pytest.importorskip("ray")
    memory_with_repeats(tmp_path / "memory")
    cfg = RetrievalConfig(num_shards=4)
    build_index(tmp_path / "memory", tmp_path / "local", cfg, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        build_index(tmp_path / "memory", tmp_path / "ray", replace(cfg, executor="ray"), progress=False)
    finally:
        ray.shutdown()
    local, distributed = read_shard_files(tmp_path / "local"), read_shard_files(tmp_path / "ray")
    assert sorted(local) == sorted(distributed) and "shard-00003/bm25/data.csc.index.npy" in local
    assert local == distributed  # index.json, reports, every shard's BM25 arrays and vocabulary
    for shard in range(4):  # Arrow files carry no paths, but compare their rows, not their bytes
        name = f"shard-{shard:05d}/corpus.arrow"
        tables = [pa.ipc.open_file(tmp_path / d / name).read_all() for d in ("local", "ray")]
        assert tables[0].num_rows > 0 and tables[0].equals(tables[1])
