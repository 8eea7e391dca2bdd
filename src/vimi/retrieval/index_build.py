"""`vimi index`: build a sharded retrieval index from an (id, text, image) memory as a map-reduce.

1. Duplicate ids: a map over the input shards hashes the id column (`find_duplicate_rows`); the first
   occurrence is kept, even when it is skipped for another reason (as in build-prompts), so that this
   pass needs the ids alone.
2. Map, one task per index shard (a contiguous range of memory rows): validate the rows, write the
   shard's corpus.arrow, tokenize it once into its term counts (`TermCounts`) and its share of the
   corpus statistics (`BM25Stats`). Reduce: sum the statistics.
3. Map, one task per shard: score the shard's term counts with the corpus-wide statistics (or embed
   its texts, dense backend) and save. Then index.json, last.

Tasks run one after another in this process or as Ray tasks (`retrieval.executor`, `vimi index
--executor ray`); both write the same files, which equal a single sequential pass's (tested).
"""

import contextlib
import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from vimi.config import RetrievalConfig
from vimi.data.manifest import count_rows, manifest_root
from vimi.errors import DataError
from vimi.retrieval.bm25 import BM25Index, BM25Stats, TermCounts
from vimi.retrieval.corpus import (
    CorpusStore,
    CorpusWriter,
    check_columns,
    decode_id,
    find_duplicate_rows,
    iter_row_range,
    resolve_media,
)
from vimi.retrieval.dense import DenseIndex, TextEmbedder, choose_index_kind
from vimi.retrieval.executors import map_tasks, ray_session
from vimi.retrieval.report import SkipLog, write_report
from vimi.retrieval.sharded import INDEX_FILE, INDEX_FORMAT, shard_dir
from vimi.retrieval.tokenize import TextTokenizer, decode_text
from vimi.utils.atomic import write_json_atomic

log = logging.getLogger(__name__)

COLUMNS = ["id", "text", "image"]
TERM_COUNTS = "term_counts.npz"
"""A shard's term frequencies, from the task that tokenized it to the one that scores it."""


@dataclass(frozen=True)
class IndexJob:
    """What every task of one build needs (picklable for Ray)."""

    corpus: str
    out: str
    cfg: RetrievalConfig
    bounds: tuple[int, ...]
    """Shard s holds the valid rows among memory rows [bounds[s], bounds[s + 1])."""
    duplicate_rows: frozenset[int]


@dataclass
class ShardCorpus:
    """What the first map returns for one shard."""

    rows: int
    stats: BM25Stats
    skips: list[dict]


def write_shard_corpus(shard: int, job: IndexJob) -> ShardCorpus:
    """Map 1: the shard's valid rows into its corpus.arrow (atomically) and their BM25 statistics."""
    folder = Path(job.out) / shard_dir(shard)
    shutil.rmtree(folder, ignore_errors=True)
    root = manifest_root(job.corpus)
    tokenizer = TextTokenizer(job.cfg.stopwords, job.cfg.stemmer)
    stats, skips = BM25Stats(), SkipLog(logger=None)  # the driver logs the skips, in row order
    docs_tokens: list[list[str]] = []
    start, stop = job.bounds[shard], job.bounds[shard + 1]
    with CorpusWriter(folder / "corpus.arrow") as writer:
        for first, table in iter_row_range(job.corpus, start, stop, COLUMNS, columns=COLUMNS):
            for row, record in enumerate(table.to_pylist(), start=first):
                item_id, reason = decode_id(record["id"])
                if row in job.duplicate_rows:
                    reason = reason or f"duplicate_id: {item_id} appears in an earlier row"
                text, text_reason = decode_text(record["text"])
                image, image_reason = resolve_media(root, record["image"])
                reason = reason or text_reason or image_reason
                if reason:
                    skips.skip("corpus", row, item_id, reason)
                    continue
                writer.append(item_id, text, image)
                if job.cfg.backend == "bm25":
                    docs_tokens.append(tokenizer.tokenize(text))
                    stats.add(docs_tokens[-1])
    if job.cfg.backend == "bm25":
        TermCounts.count(docs_tokens).save(folder / TERM_COUNTS)
    return ShardCorpus(writer.rows, stats, skips.records)


def score_shard(shard: int, job: IndexJob, stats: BM25Stats) -> tuple[str, int]:
    """Map 2: the shard's search structure (BM25 scores under the corpus-wide `stats`, or dense
    vectors); returns the dense index kind and vector size (("", 0) for BM25)."""
    folder, cfg = Path(job.out) / shard_dir(shard), job.cfg
    if cfg.backend == "bm25":
        BM25Index.score(TermCounts.load(folder / TERM_COUNTS), stats, cfg.k1, cfg.b).save(folder / "bm25")
        return "", 0
    texts = [t for batch in CorpusStore(folder / "corpus.arrow").texts() for t in batch]
    embedder = _embedder(cfg.dense_model_path, cfg.dense_batch_size)
    vectors = embedder.embed(texts, progress=False)
    kind = choose_index_kind(cfg.dense_index, len(vectors), cfg.dense_flat_max_rows)
    DenseIndex.build(vectors, kind, cfg.ivf_nprobe).save(folder)
    return kind, embedder.dim


@functools.lru_cache(maxsize=1)
def _embedder(path: str, batch_size: int) -> TextEmbedder:
    """One text encoder per process, reused by the shards that process scores."""
    return TextEmbedder(path, batch_size)


def build_index(corpus: str | Path, out: str | Path, cfg: RetrievalConfig, progress: bool = True) -> Path:
    """Index an (id, text, image) manifest into `out`; returns the path of index.json."""
    corpus, out = Path(corpus).resolve(), Path(out)
    check_columns(corpus, COLUMNS)
    # A rebuild that dies must not leave the old index looking valid.
    (out / INDEX_FILE).unlink(missing_ok=True)
    input_rows = count_rows(corpus)
    num_shards = max(1, min(cfg.num_shards, input_rows))
    bounds = tuple(input_rows * s // num_shards for s in range(num_shards + 1))
    # One Ray session (when asked for) serves all three maps.
    with ray_session(cfg.ray_address) if cfg.executor == "ray" else contextlib.nullcontext():
        return _build(corpus, out, cfg, bounds, progress)


def _build(corpus: Path, out: Path, cfg: RetrievalConfig, bounds: tuple[int, ...], progress: bool) -> Path:
    """The maps and reduces of `build_index` (steps 1-3 of the module docstring)."""
    input_rows, num_shards = bounds[-1], len(bounds) - 1
    run = functools.partial(map_tasks, executor=cfg.executor, address=cfg.ray_address, progress=progress)
    job = IndexJob(
        str(corpus), str(out), cfg, bounds, find_duplicate_rows(corpus, cfg.executor, cfg.ray_address)
    )
    corpora: list[ShardCorpus] = run(write_shard_corpus, range(num_shards), (job,), desc="index: rows")
    skips = SkipLog(log)
    for record in sorted((r for c in corpora for r in c.skips), key=lambda r: r["row"]):
        skips.skip(record["where"], record["row"], record["id"], record["reason"])
    shards, offset = [], 0
    for s, shard in enumerate(corpora):
        shards.append({"dir": shard_dir(s), "rows": shard.rows, "offset": offset})
        offset += shard.rows
    summary = {"corpus": str(corpus), "input_rows": input_rows, "rows": offset}
    write_report(out, "index", skips.records, summary)
    if offset == 0:
        raise DataError(
            f"{corpus}: no valid rows to index (all {input_rows} skipped; see {out}/index.skips.jsonl)"
        )
    stats = BM25Stats()
    for shard in corpora:  # the reduce
        stats = stats.merge(shard.stats)
    scored = run(score_shard, range(num_shards), (job, stats), desc="index: scores")
    tokenizer = TextTokenizer(cfg.stopwords, cfg.stemmer)
    meta = {"format": INDEX_FORMAT, "version": 1, "backend": cfg.backend, **summary, "shards": shards}
    meta["tokenizer"] = tokenizer.config()
    if cfg.backend == "bm25":
        meta["bm25"] = {
            "k1": cfg.k1,
            "b": cfg.b,
            "num_docs": stats.num_docs,
            "avg_doc_len": stats.avg_doc_len,
        }
    else:
        meta["dense"] = {
            "model_path": cfg.dense_model_path,
            "kinds": [kind for kind, _ in scored],
            "dim": scored[0][1],
            "nprobe": cfg.ivf_nprobe,
            "batch_size": cfg.dense_batch_size,
        }
    write_json_atomic(out / INDEX_FILE, meta)
    for shard in shards:  # kept until here, so that a retried scoring task finds its counts
        (out / shard["dir"] / TERM_COUNTS).unlink(missing_ok=True)
    log.info(
        "indexed %d of %d rows into %d shard(s) at %s (%d skipped, executor %s)",
        offset,
        input_rows,
        len(shards),
        out,
        len(skips.records),
        cfg.executor,
    )
    return out / INDEX_FILE
