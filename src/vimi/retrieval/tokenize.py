"""Text for retrieval: decoding of untrusted text fields and the BM25 tokenizer (stopwords + stemming)."""

import re

import Stemmer
from bm25s.tokenization import _infer_stopwords

# Words of two or more letters/digits (the bm25s and scikit-learn default). Made-up names such as
# "Zorblax" survive as one token: stemming only trims English suffixes, identically on both sides.
TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")


def decode_text(value: object) -> tuple[str | None, str]:
    """A text field as clean UTF-8 str, or (None, reason) for empty / non-UTF-8 / non-text values."""
    if value is None:
        return None, "empty_text"
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            return None, f"non_utf8_text: {err.reason} at byte {err.start}"
    if not isinstance(value, str):
        return None, f"not_text: {type(value).__name__}"
    try:
        value.encode("utf-8")  # lone surrogates (from surrogateescape decoding) are not UTF-8
    except UnicodeEncodeError as err:
        return None, f"non_utf8_text: {err.reason} at character {err.start}"
    text = " ".join(value.split())
    if not text:
        return None, "empty_text"
    return text, ""


class TextTokenizer:
    """Lower-cases, splits into words, drops stopwords and stems (PyStemmer); one instance per process."""

    def __init__(self, stopwords: str = "en", stemmer: str = "english"):
        self.stopwords_name = stopwords
        self.stemmer_name = stemmer
        self.stopwords = frozenset(_infer_stopwords(stopwords or None))
        self._stemmer = Stemmer.Stemmer(stemmer) if stemmer else None

    def tokenize(self, text: str) -> list[str]:
        """The index terms of one text."""
        words = [w for w in TOKEN_PATTERN.findall(text.lower()) if w not in self.stopwords]
        return self._stemmer.stemWords(words) if self._stemmer else words

    def tokenize_many(self, texts: list[str]) -> list[list[str]]:
        return [self.tokenize(text) for text in texts]

    def config(self) -> dict:
        """What is saved beside an index so that queries are tokenized exactly like the documents."""
        return {"stopwords": self.stopwords_name, "stemmer": self.stemmer_name}
