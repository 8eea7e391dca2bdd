"""A retrieval index split into shards that are searched independently and merged exactly.

Layout of an index folder (`vimi index --corpus MEMORY --out INDEX`, built by `index_build.py`)::

    INDEX/index.json              backend, tokenizer, global BM25 statistics, shard table; written LAST,
                                  so a folder without it is an interrupted build and is refused
    INDEX/shard-00000/corpus.arrow   the shard's rows (id, text, absolute image path), memory-mapped
    INDEX/shard-00000/bm25/          bm25s arrays (data/indices/indptr .npy, memory-mapped) + vocab
    INDEX/shard-00000/dense.faiss    (dense backend) FAISS index of the shard's text embeddings
    INDEX/index.report.json, INDEX/index.skips.jsonl   rows dropped (empty text, missing image, ...)

Exactness. Shard s holds a contiguous range of the memory's valid rows; a hit's global row is the
shard's offset plus its local row, i.e. its position in the memory. BM25 scores depend on corpus
statistics (document frequency per term, number of documents, mean length): a first streaming pass
computes them over the WHOLE memory (`BM25Stats`, mergeable), and every shard's score matrix is
built with them, so a document scores the same whichever shard holds it. The merged top-K is the
top-K over all shards' top-K by (score desc, global row asc), which equals the single-index top-K,
ties broken by memory order (tested in tests/retrieval/test_sharded.py). Dense flat shards are
exact too (cosine needs no corpus statistics); IVF/HNSW are approximate by design.

How a 500M-pair memory is laid out and run
------------------------------------------
* Memory: a vimi manifest of ~50k Parquet shards of 10k rows (id, text, image path), images on
  object storage or a shared file system. Only paths travel; images are never copied.
* Statistics pass (map-reduce, `index_build.py`; `vimi index --executor ray` runs each shard as a Ray
  task): each task validates one shard's row range, writes its corpus.arrow and emits a `BM25Stats`
  (doc_freq Counter, num_docs, total_tokens); the reduce sums them (`BM25Stats.merge`). Duplicate ids
  are found first by a map that hashes each input shard's ids (the driver keeps 16 bytes a row: 8 GB at
  500M rows).
  English captions give ~10-30M distinct terms: a few GB for the global df table, put in Ray's object
  store once for the scoring tasks.
* Index shards: with ~10 short tokens per caption, a shard of 25M pairs is ~250M non-zeros, i.e.
  ~2 GB of float32 scores + int32 rows, plus ~3 GB of corpus.arrow text. 20 shards of 25M pairs cover
  500M pairs; each is scored by one task from its corpus.arrow and the global statistics (no
  coordination), and every file is memory-mapped, so a machine serves any number of shards that fit
  its page cache or disk. Shards count follows `retrieval.num_shards` (here: 20).
* Queries (`vimi build-prompts --executor ray`): the video captions are cut into fixed row ranges
  (output shards). Each Ray task opens the index (mmap: pages are shared by all processes on a
  node), retrieves its captions' top-K*oversample from every index shard in one batched bm25s call
  per shard, merges, filters and writes its output shard atomically with a completion marker. A
  killed job is re-run with the same command and redoes only unfinished output shards. For indexes
  larger than one node's disk, run one Ray actor per index shard (each on the node holding it) and
  have query tasks fan out to all actors and merge - the merge rule above is unchanged.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vimi.config import RetrievalConfig
from vimi.errors import DataError
from vimi.retrieval.bm25 import BM25Index
from vimi.retrieval.corpus import CorpusStore
from vimi.retrieval.dense import DenseIndex, TextEmbedder
from vimi.retrieval.tokenize import TextTokenizer
from vimi.utils.files import read_json

log = logging.getLogger(__name__)

INDEX_FORMAT = "vimi-retrieval-index"
INDEX_FILE = "index.json"


@dataclass
class Hit:
    """One retrieved memory row."""

    row: int
    id: str
    text: str
    image: str
    score: float


def shard_dir(s: int) -> str:
    return f"shard-{s:05d}"


def read_index_meta(path: str | Path) -> dict:
    path = Path(path)
    meta_path = path / INDEX_FILE if path.is_dir() else path
    if not meta_path.is_file():
        raise DataError(
            f"{path}: not a retrieval index ({INDEX_FILE} missing; an interrupted build?); "
            "build it with `vimi index --corpus MEMORY --out INDEX`"
        )
    return read_json(meta_path, "vimi retrieval index", expect_format=INDEX_FORMAT)


class ShardedIndex:
    """All shards of an index folder, memory-mapped; `search` merges their top-K exactly."""

    def __init__(self, path: str | Path, threads: int = 0, dense_batch_size: int = 0):
        self.path = Path(path)
        self.meta = read_index_meta(self.path)
        self.backend: str = self.meta["backend"]
        self.threads = threads or os.cpu_count() or 1
        # Query batches of the dense embedder: the caller's, else the retrieval.dense_batch_size of the build.
        built_with = self.meta.get("dense", {}).get("batch_size", RetrievalConfig.dense_batch_size)
        self.dense_batch_size = dense_batch_size or built_with
        self.offsets = np.array([s["offset"] for s in self.meta["shards"]], dtype=np.int64)
        self.stores = [CorpusStore(self.path / s["dir"] / "corpus.arrow") for s in self.meta["shards"]]
        self.tokenizer = TextTokenizer(**self.meta["tokenizer"])
        self._embedder: TextEmbedder | None = None
        if self.backend == "bm25":
            self.shards = [BM25Index.load(self.path / s["dir"] / "bm25") for s in self.meta["shards"]]
        else:
            nprobe = self.meta["dense"]["nprobe"]
            self.shards = [DenseIndex.load(self.path / s["dir"], nprobe=nprobe) for s in self.meta["shards"]]

    @property
    def num_rows(self) -> int:
        return int(self.meta["rows"])

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], global rows [Q, k]) best first; row -1 where fewer than k rows match."""
        if self.backend == "bm25":
            encoded = self.tokenizer.tokenize_many(queries)
            per_shard = [shard.search(encoded, k, self.threads) for shard in self.shards]
        else:
            if self._embedder is None:
                self._embedder = TextEmbedder(self.meta["dense"]["model_path"], self.dense_batch_size)
            vectors = self._embedder.embed(queries)
            per_shard = [shard.search(vectors, k) for shard in self.shards]
        scores = np.concatenate([s for s, _ in per_shard], axis=1)  # [Q, sum of per-shard k]
        local = np.concatenate([r for _, r in per_shard], axis=1)
        rows = np.concatenate([r + off for (_, r), off in zip(per_shard, self.offsets)], axis=1)
        # BM25 score 0 means no query term matched: not a hit. FAISS pads missing results with row -1.
        invalid = (local < 0) | (scores <= 0) if self.backend == "bm25" else local < 0
        scores = np.where(invalid, -np.inf, scores).astype(np.float32)
        rows = np.where(invalid, np.iinfo(np.int64).max, rows)
        order = np.lexsort((rows, -scores), axis=-1)[:, :k]  # score desc, then memory order
        scores, rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
        rows[~np.isfinite(scores)] = -1
        if rows.shape[1] < k:  # a memory smaller than k
            pad = k - rows.shape[1]
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return scores, rows

    def lookup(self, rows: list[int]) -> dict[int, dict]:
        """Global row -> {id, text, image} for the given rows (reads only those rows' pages)."""
        wanted = sorted({int(r) for r in rows if r >= 0})
        shard_of = np.searchsorted(self.offsets, np.array(wanted, dtype=np.int64), side="right") - 1
        out: dict[int, dict] = {}
        for s in np.unique(shard_of):
            members = [r for r, sh in zip(wanted, shard_of) if sh == s]
            for r, rec in zip(members, self.stores[s].take([r - int(self.offsets[s]) for r in members])):
                out[r] = rec
        return out

    def hits(self, queries: list[str], k: int) -> list[list[Hit]]:
        """Top-k hits per query, resolved to memory rows."""
        scores, rows = self.search(queries, k)
        records = self.lookup(rows.ravel().tolist())
        return [
            [Hit(int(r), **records[int(r)], score=float(s)) for s, r in zip(srow, rrow) if r >= 0]
            for srow, rrow in zip(scores, rows)
        ]


def open_index(path: str | Path, threads: int = 0, dense_batch_size: int = 0) -> ShardedIndex:
    return ShardedIndex(path, threads, dense_batch_size)
