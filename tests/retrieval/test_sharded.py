import json
import random

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from vimi.config import RetrievalConfig
from vimi.data.manifest import ManifestWriter, write_index, write_shard
from vimi.errors import DataError
from vimi.retrieval import build_index, open_index, retrieve_examples

WORDS = [
    "fox",
    "dog",
    "red",
    "blue",
    "runs",
    "zorblax",
    "jumps",
    "tree",
    "cat",
    "sky",
    "dax",
    "meadow",
    "wug",
    "kiki",
    "bouba",
    "desert",
    "ocean",
    "spins",
]


def random_memory(root, n: int, seed: int = 0):
    rng = random.Random(seed)
    root.mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(root / "img.png")
    rows = [
        {
            "id": f"m{i}",
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))),
            "image": "img.png",
        }
        for i in range(n)
    ]
    with ManifestWriter(root, shard_size=50) as writer:
        writer.write_many(rows)
    return rows


@pytest.mark.parametrize("num_shards", [2, 5])
def test_sharded_top_k_equals_single_index_top_k(tmp_path, num_shards):
    random_memory(tmp_path / "memory", 300)
    build_index(tmp_path / "memory", tmp_path / "one", RetrievalConfig(num_shards=1))
    build_index(tmp_path / "memory", tmp_path / "many", RetrievalConfig(num_shards=num_shards))
    one, many = open_index(tmp_path / "one", threads=1), open_index(tmp_path / "many", threads=1)
    assert len(many.shards) == num_shards and sum(s.num_docs for s in many.shards) == 300
    rng = random.Random(1)
    queries = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) for _ in range(60)]
    k = 8
    (s1, r1), (s2, r2) = one.search(queries, k), many.search(queries, k)
    # Global statistics make every document score the same in a shard as in the whole index.
    assert np.array_equal(s1, s2)
    # Ties are broken by memory row in both, so the hit rows are identical too.
    assert np.array_equal(r1, r2)
    # And each merged list really is the top-k of all 300 scores (brute force with bm25s on one shard).
    full = one.shards[0].retriever
    for q, scores in zip(one.tokenizer.tokenize_many(queries), s1):
        expected = np.sort(full.get_scores(q) if q else np.zeros(300))[::-1][:k]
        expected = np.where(expected > 0, expected, -np.inf)
        assert np.array_equal(scores, expected.astype(np.float32))


def test_hits_resolve_to_memory_rows(tmp_path):
    rows = random_memory(tmp_path / "memory", 120)
    build_index(tmp_path / "memory", tmp_path / "index", RetrievalConfig(num_shards=3))
    index = open_index(tmp_path / "index")
    for hit in index.hits(["zorblax kiki"], 5)[0]:
        assert hit.id == rows[hit.row]["id"] and hit.text == rows[hit.row]["text"]
        assert hit.image == str((tmp_path / "memory" / "img.png").resolve())
        assert "zorblax" in hit.text or "kiki" in hit.text


def test_retrieve_examples_for_a_text_prompt(tmp_path, memory):
    build_index(memory, tmp_path / "index", RetrievalConfig())
    examples = retrieve_examples("a zorblax in the desert", tmp_path / "index", k=3)
    assert len(examples) == 3
    assert examples[0].text == "A photo of a zorblax in the desert."
    assert examples[0].score >= examples[1].score >= examples[2].score
    assert all("zorblax" in e.text for e in examples)
    assert retrieve_examples("nothing matches this", tmp_path / "index", k=3) == []


def test_bad_corpus_rows_are_counted_skipped_and_listed(tmp_path, memory):
    table = pa.table(
        {
            "id": ["ok1", "ok2", "ok1", "empty", "missing", "badutf", None],
            "text": [b"a blicket", b"a dax", b"a wug", b"   ", b"a kiki", b"caf\xe9", b"a fep"],
            "image": [
                "images/blicket-0.png",
                "images/dax-0.png",
                "images/wug-0.png",
                "images/wug-0.png",
                "images/nope.png",
                "images/fep-0.png",
                "images/fep-0.png",
            ],
        }
    )
    root = tmp_path / "bad"
    write_shard(root / "part-00000.parquet", table.to_pylist(), table.schema)
    write_index(root, [{"file": "part-00000.parquet", "rows": 7}])
    for name in ("blicket-0", "dax-0", "wug-0", "fep-0"):
        (root / "images").mkdir(exist_ok=True)
        (root / "images" / f"{name}.png").write_bytes((memory / "images" / f"{name}.png").read_bytes())
    build_index(root, tmp_path / "index", RetrievalConfig(num_shards=2))
    report = json.loads((tmp_path / "index" / "index.report.json").read_text())
    assert report["rows"] == 2 and report["skipped"] == 5
    assert report["skipped_by_reason"] == {
        "duplicate_id": 1,
        "empty_text": 1,
        "missing_id": 1,
        "missing_media": 1,
        "non_utf8_text": 1,
    }
    lines = [json.loads(x) for x in (tmp_path / "index" / "index.skips.jsonl").read_text().splitlines()]
    assert [x["row"] for x in lines] == [2, 3, 4, 5, 6]
    assert "nope.png" in lines[2]["reason"]
    assert [h.id for h in open_index(tmp_path / "index").hits(["blicket dax"], 5)[0]] == ["ok1", "ok2"]


def test_incomplete_index_is_refused(tmp_path, memory):
    build_index(memory, tmp_path / "index", RetrievalConfig())
    (tmp_path / "index" / "index.json").unlink()
    with pytest.raises(DataError, match=r"index\.json missing"):
        open_index(tmp_path / "index")


def test_corpus_without_needed_columns_is_refused(tmp_path):
    with ManifestWriter(tmp_path / "m") as writer:
        writer.write({"id": "a", "caption": "x"})
    with pytest.raises(DataError, match=r"lacks column\(s\) \['text', 'image'\]"):
        build_index(tmp_path / "m", tmp_path / "index", RetrievalConfig())


def test_corrupt_index_json_is_a_data_error_naming_it(tmp_path, memory):
    build_index(memory, tmp_path / "index", RetrievalConfig())
    assert open_index(tmp_path / "index", dense_batch_size=7).dense_batch_size == 7
    assert open_index(tmp_path / "index").dense_batch_size == RetrievalConfig().dense_batch_size
    (tmp_path / "index" / "index.json").write_text('{"format": "vimi-retrieval-ind')
    with pytest.raises(DataError, match=r"index\.json: corrupt vimi retrieval index"):
        open_index(tmp_path / "index")


def test_corpus_writer_commits_on_success_and_leaves_nothing_on_error(tmp_path):
    from vimi.retrieval.corpus import CorpusStore, CorpusWriter

    with CorpusWriter(tmp_path / "ok.arrow", batch_rows=1) as writer:
        writer.append("a", "a red fox", "a.png")
        writer.append("b", "a blue dog", "b.png")
    assert [r["id"] for r in CorpusStore(tmp_path / "ok.arrow").take([0, 1])] == ["a", "b"]
    with pytest.raises(KeyError), CorpusWriter(tmp_path / "bad.arrow", batch_rows=1) as writer:
        writer.append("a", "a red fox", "a.png")
        raise KeyError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.arrow"]  # no temp file, no bad.arrow


def test_failed_build_leaves_no_temporary_corpus_files(tmp_path, memory, monkeypatch):
    import vimi.retrieval.index_build as index_build

    def fail(*args, **kwargs):
        raise RuntimeError("decode failed")

    monkeypatch.setattr(index_build, "decode_text", fail)
    with pytest.raises(RuntimeError, match="decode failed"):
        build_index(memory, tmp_path / "index", RetrievalConfig(num_shards=2))
    assert not [p for p in (tmp_path / "index").rglob("*") if p.is_file()]
