import random

import bm25s
import numpy as np

from vimi.retrieval.bm25 import BM25Index, BM25Stats
from vimi.retrieval.tokenize import TextTokenizer

WORDS = ["fox", "dog", "red", "blue", "runs", "zorblax", "jumps", "tree", "cat", "sky", "dax", "meadow"]


def corpus(n: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(n)]
    return TextTokenizer().tokenize_many(texts)


def stats_of(docs: list[list[str]]) -> BM25Stats:
    stats = BM25Stats()
    for tokens in docs:
        stats.add(tokens)
    return stats


QUERIES = [["red", "fox", "run"], ["zorblax"], ["cat", "sky", "dog", "dog"], ["unknownword"], []]


def test_scores_equal_bm25s_own_index_bit_for_bit():
    docs = corpus(400)
    ours = BM25Index.build(docs, stats_of(docs))
    reference = bm25s.BM25(method="lucene")
    reference.index(docs, show_progress=False)
    for query in QUERIES[:3]:
        assert np.array_equal(ours.retriever.get_scores(query), reference.get_scores(query))
    scores, rows = ours.search(QUERIES, k=5, threads=0)
    ref = reference.retrieve(QUERIES[:3], k=5, show_progress=False)
    assert np.array_equal(scores[:3], ref.scores)
    assert (scores[3:] == 0).all() and (rows[3:] == -1).all()  # no known term: no hits


def test_save_and_memory_mapped_load_give_the_same_results(tmp_path):
    docs = corpus(200)
    index = BM25Index.build(docs, stats_of(docs))
    index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25", mmap=True)
    assert isinstance(loaded.retriever.scores["data"], np.memmap)
    for a, b in zip(index.search(QUERIES, 7), loaded.search(QUERIES, 7)):
        assert np.array_equal(a, b)


def test_k_larger_than_the_shard_is_clipped():
    docs = corpus(3)
    scores, rows = BM25Index.build(docs, stats_of(docs)).search(QUERIES, k=10)
    assert scores.shape == rows.shape == (len(QUERIES), 3)


def test_stats_merge_equals_stats_of_the_whole():
    docs = corpus(100)
    merged = stats_of(docs[:37]).merge(stats_of(docs[37:]))
    whole = stats_of(docs)
    assert merged == whole
    assert np.array_equal(merged.idf(["fox", "dax"]), whole.idf(["fox", "dax"]))
