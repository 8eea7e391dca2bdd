import numpy as np
import pytest
from PIL import Image

from vimi.config import RetrievalConfig
from vimi.data.manifest import ManifestWriter
from vimi.retrieval import build_index, open_index
from vimi.retrieval.dense import DenseIndex, choose_index_kind

TEXTS = [
    "a dog playing fetch in the park",
    "a red sports car on a highway",
    "a bowl of fresh fruit on a table",
    "snow-covered mountains at sunrise",
    "a kitten sleeping on a sofa",
    "people surfing big ocean waves",
    "a plate of spaghetti with tomato sauce",
    "an old steam train crossing a bridge",
]


@pytest.fixture(scope="module")
def dense_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    Image.new("RGB", (8, 8)).save(root / "img.png")
    with ManifestWriter(root / "memory") as writer:
        writer.write_many({"id": f"t{i}", "text": t, "image": "../img.png"} for i, t in enumerate(TEXTS))
    build_index(root / "memory", root / "one", RetrievalConfig(backend="dense"), progress=False)
    build_index(
        root / "memory", root / "three", RetrievalConfig(backend="dense", num_shards=3), progress=False
    )
    return open_index(root / "one", threads=1), open_index(root / "three", threads=1)


@pytest.mark.slow
def test_real_minilm_finds_paraphrases(dense_index):
    one, _ = dense_index
    hits = one.hits(["a puppy chasing a ball", "a cat napping on a couch", "a locomotive"], 2)
    assert [h[0].id for h in hits] == ["t0", "t4", "t7"]
    assert all(-1.0 <= h.score <= 1.0 for q in hits for h in q)


@pytest.mark.slow
def test_flat_shards_merge_to_the_unsharded_result(dense_index):
    one, three = dense_index
    queries = ["pasta dinner", "winter landscape", "beach sports", "a fast vehicle"]
    (s1, r1), (s3, r3) = one.search(queries, 5), three.search(queries, 5)
    assert np.array_equal(r1, r3)
    np.testing.assert_allclose(s1, s3, rtol=1e-6)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_faiss_index_kinds_find_an_exact_copy(tmp_path, kind):
    vectors = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = DenseIndex.build(vectors, kind, nprobe=8)
    index.save(tmp_path)
    scores, rows = DenseIndex.load(tmp_path, nprobe=8).search(vectors[:50], 3)
    assert (rows[:, 0] == np.arange(50)).mean() >= 0.95  # a vector's nearest neighbour is itself
    assert np.allclose(scores[rows[:, 0] == np.arange(50), 0], 1.0, atol=1e-5)


def test_auto_picks_flat_for_small_and_ivf_for_large_shards():
    assert choose_index_kind("auto", 1000, 200_000) == "flat"
    assert choose_index_kind("auto", 300_000, 200_000) == "ivf"
    assert choose_index_kind("hnsw", 10, 200_000) == "hnsw"


def test_faiss_is_loaded_only_by_the_dense_backend():
    # BM25 (the default) runs where faiss is not installed, e.g. a machine given only the wheels it needs.
    import subprocess
    import sys

    code = "import sys, vimi.retrieval, vimi.pipeline; print('faiss' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )
    vectors = np.eye(4, dtype=np.float32)
    assert DenseIndex.build(vectors).search(vectors[:1], 1)[1][0, 0] == 0
