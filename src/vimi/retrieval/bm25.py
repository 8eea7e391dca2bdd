"""BM25 over one index shard: a bm25s eager score matrix built from corpus-wide statistics.

bm25s precomputes every (term, document) BM25 score into a sparse CSC matrix, so a query is a sum
of a few matrix columns and a top-k. Its own `index()` derives IDF and the average document length
from the documents it is given; a shard of a larger memory must instead use the statistics of the
whole memory, or its scores are not comparable with other shards' scores. `BM25Stats` is that
corpus-wide first pass; `BM25Index.build` scores one shard's documents with it (vectorised numpy,
the same Lucene-variant formulas as bm25s) and hands the matrix to a `bm25s.BM25` for retrieval,
saving (`save`) and memory-mapped loading (`load(mmap=True)`). Build = `TermCounts.count` (what the
shard alone decides) + `BM25Index.score` (with the statistics), so that a map-reduce can split them.
"""

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import bm25s
import numpy as np

from vimi.errors import DataError
from vimi.utils.atomic import atomic_path


@dataclass
class BM25Stats:
    """Corpus-wide document frequencies, document count and total length (mergeable across workers)."""

    doc_freq: Counter = field(default_factory=Counter)
    num_docs: int = 0
    total_tokens: int = 0

    def add(self, tokens: list[str]) -> None:
        self.doc_freq.update(set(tokens))
        self.num_docs += 1
        self.total_tokens += len(tokens)

    def merge(self, other: "BM25Stats") -> "BM25Stats":
        """Sum of two partial statistics: the reduce step of a distributed first pass."""
        return BM25Stats(
            self.doc_freq + other.doc_freq,
            self.num_docs + other.num_docs,
            self.total_tokens + other.total_tokens,
        )

    @property
    def avg_doc_len(self) -> float:
        return self.total_tokens / max(self.num_docs, 1)

    def idf(self, terms: list[str]) -> np.ndarray:
        """Lucene IDF, log(1 + (N - df + 0.5) / (df + 0.5)), as bm25s computes it (float32)."""
        n = self.num_docs
        return np.array(
            [math.log(1 + (n - self.doc_freq[t] + 0.5) / (self.doc_freq[t] + 0.5)) for t in terms],
            dtype=np.float32,
        )


class TieStableBM25(bm25s.BM25):
    """bm25s with a deterministic top-k: ties broken by document order, zero scores (no match) left out.

    bm25s's argpartition picks arbitrarily among documents tied at the k-th score, so two shards
    of one memory could not agree with the unsharded index. Only the per-query selection changes
    (and gets faster); scoring, batching and threads are bm25s's own `retrieve`.
    """

    def _get_top_k_results(self, query_tokens_single, k=1000, backend="auto", sorted=True, weight_mask=None):
        rows = np.full(k, -1, dtype=np.int64)
        top = np.zeros(k, dtype=np.float32)
        if len(query_tokens_single) == 0:
            return top, rows
        scores = self.get_scores(query_tokens_single, weight_mask=weight_mask)
        # Select among matched documents only: numpy's argpartition is pathologically slow on the
        # mostly-zero score vector (~100x here), and partitioning for the k-th LARGEST is slow with ties,
        # so the negated values are partitioned for the k-th smallest instead.
        matched = np.flatnonzero(scores > 0)
        if len(matched) > k:
            values = scores[matched]
            kth = -np.partition(-values, k - 1)[k - 1]
            matched = matched[values >= kth]
        order = np.lexsort((matched, -scores[matched]))[:k]  # score desc, then document order
        rows[: len(order)], top[: len(order)] = matched[order], scores[matched[order]]
        return top, rows


@dataclass
class TermCounts:
    """One shard's term frequencies: all of BM25 that does not depend on other shards, so the map task
    that tokenizes a shard can count it, and the task that scores it after the reduce need not tokenize again."""

    terms: list[str]
    """The shard's vocabulary, sorted."""
    lengths: np.ndarray
    """[docs] int64: tokens per document."""
    keys: np.ndarray
    """[nnz] int64: term index * docs + document, sorted (CSC order: by term, then document)."""
    tf: np.ndarray
    """[nnz] int64: occurrences of the term in the document."""

    @classmethod
    def count(cls, docs_tokens: list[list[str]]) -> "TermCounts":
        terms = sorted({t for tokens in docs_tokens for t in tokens})
        vocab = {t: i for i, t in enumerate(terms)}
        num_docs = len(docs_tokens)
        lengths = np.fromiter((len(t) for t in docs_tokens), dtype=np.int64, count=num_docs)
        term_ids = np.fromiter(
            (vocab[t] for tokens in docs_tokens for t in tokens), dtype=np.int64, count=int(lengths.sum())
        )
        doc_ids = np.repeat(np.arange(num_docs, dtype=np.int64), lengths)
        keys, tf = np.unique(term_ids * num_docs + doc_ids, return_counts=True)
        return cls(terms, lengths, keys, tf)

    def save(self, path: str | Path) -> None:
        """One .npz (written atomically) holding the arrays and the vocabulary."""
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
            np.savez(
                f, lengths=self.lengths, keys=self.keys, tf=self.tf, terms=np.array(self.terms, dtype=str)
            )

    @classmethod
    def load(cls, path: str | Path) -> "TermCounts":
        with np.load(path) as data:
            return cls(data["terms"].tolist(), data["lengths"], data["keys"], data["tf"])


class BM25Index:
    """One shard: documents' BM25 scores under global statistics, searched with bm25s."""

    def __init__(self, retriever: bm25s.BM25):
        self.retriever = retriever

    @property
    def num_docs(self) -> int:
        return int(self.retriever.scores["num_docs"])

    @classmethod
    def build(
        cls, docs_tokens: list[list[str]], stats: BM25Stats, k1: float = 1.5, b: float = 0.75
    ) -> "BM25Index":
        """Score `docs_tokens` (this shard's documents, in order) with corpus-wide `stats`."""
        return cls.score(TermCounts.count(docs_tokens), stats, k1, b)

    @classmethod
    def score(cls, counts: TermCounts, stats: BM25Stats, k1: float = 1.5, b: float = 0.75) -> "BM25Index":
        """The shard's BM25 score matrix from its term `counts` and corpus-wide `stats`."""
        terms, lengths = counts.terms, counts.lengths
        num_docs, num_terms = len(lengths), len(terms) + 1  # + bm25s's empty-query token
        col, row = counts.keys // max(num_docs, 1), counts.keys % max(num_docs, 1)
        idf = np.append(stats.idf(terms), np.float32(0.0))
        tf = counts.tf.astype(np.float32)
        # bm25s "lucene": idf * tf / (k1 * (1 - b + b * dl / avgdl) + tf), computed in float64.
        norm = k1 * ((1 - b) + b * lengths[row] / np.float64(stats.avg_doc_len))
        data = (idf[col].astype(np.float64) * (tf / (norm + tf))).astype(np.float32)
        indptr = np.zeros(num_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(col, minlength=num_terms), out=indptr[1:])
        retriever = TieStableBM25(method="lucene", k1=k1, b=b)
        retriever.scores = {
            "data": data,
            "indices": row.astype(np.int32),
            "indptr": indptr,
            "num_docs": num_docs,
        }
        retriever.vocab_dict = {**{t: i for i, t in enumerate(terms)}, "": len(terms)}
        retriever.unique_token_ids_set = set(retriever.vocab_dict.values())
        retriever.nonoccurrence_array = None  # only BM25L / BM25+ use it
        return cls(retriever)

    def save(self, folder: str | Path) -> None:
        self.retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "BM25Index":
        folder = Path(folder)
        if not (folder / "params.index.json").is_file():
            raise DataError(
                f"{folder}: not a saved BM25 shard (params.index.json missing); rebuild with `vimi index`"
            )
        try:
            retriever = TieStableBM25.load(str(folder), mmap=mmap, load_corpus=False)
        except (OSError, ValueError, json.JSONDecodeError) as err:
            raise DataError(f"{folder}: unreadable BM25 shard ({err}); rebuild with `vimi index`") from None
        return cls(retriever)

    def search(
        self, queries_tokens: list[list[str]], k: int, threads: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores [Q, k'], local rows [Q, k']) with k' = min(k, docs); all queries in one bm25s call."""
        k = min(k, self.num_docs)
        if k == 0 or not queries_tokens:
            return np.zeros((len(queries_tokens), 0), np.float32), np.zeros(
                (len(queries_tokens), 0), np.int64
            )
        rows, scores = self.retriever.retrieve(
            queries_tokens, k=k, n_threads=threads, show_progress=False, return_as="tuple"
        )
        return np.asarray(scores, dtype=np.float32), np.asarray(rows, dtype=np.int64)
