"""Retrieval of in-context image-text examples: index a memory, build multimodal prompts, ground prompts."""

from vimi.retrieval.bm25 import BM25Index, BM25Stats
from vimi.retrieval.build_prompts import build_prompts
from vimi.retrieval.dense import DenseIndex, TextEmbedder
from vimi.retrieval.index_build import build_index
from vimi.retrieval.retrieve import RetrievedExample, retrieve_examples
from vimi.retrieval.sharded import Hit, ShardedIndex, open_index
from vimi.retrieval.tokenize import TextTokenizer

__all__ = [
    "BM25Index",
    "BM25Stats",
    "DenseIndex",
    "Hit",
    "RetrievedExample",
    "ShardedIndex",
    "TextEmbedder",
    "TextTokenizer",
    "build_index",
    "build_prompts",
    "open_index",
    "retrieve_examples",
]
