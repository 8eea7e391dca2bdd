"""Filters on retrieved hits: leakage (a hit image that is a near-copy of the target video's frames),
a minimum score, and duplicate hits (same image or same text).

Near-copies are found with a 64-bit difference hash (dHash, Krawetz 2013): the image is reduced to a
9x8 grey thumbnail and each bit says whether a pixel is brighter than its right neighbour. Resizing,
re-encoding and small colour shifts keep most bits; the Hamming distance counts the changed ones.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image

from vimi.data.image_io import load_pil_image
from vimi.errors import MediaError

HASH_WIDTH, HASH_HEIGHT = 9, 8


def dhash(image: Image.Image | np.ndarray) -> int:
    """64-bit difference hash of an image (PIL, or uint8 [H, W, 3] RGB / [H, W] grey)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if image.mode != "L":  # video frames arrive grey already: skip the copy
        image = image.convert("L")
    small = image.resize((HASH_WIDTH, HASH_HEIGHT), Image.Resampling.BOX).tobytes()
    grey = np.frombuffer(small, np.uint8).reshape(HASH_HEIGHT, HASH_WIDTH)  # [72] -> [8, 9]
    bits = (grey[:, 1:] > grey[:, :-1]).ravel()  # [8, 8] -> [64]
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@functools.lru_cache(maxsize=1 << 18)
def image_hash(path: str) -> int:
    """dHash of an image file, cached by path (popular memory images are hit by many captions)."""
    return dhash(load_pil_image(path))


PLANAR_YUV = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray"})


def _luma(frame: av.VideoFrame) -> Image.Image | np.ndarray:
    """Grey image of a decoded frame: the Y plane itself when planar YUV (no colour conversion, which
    costs more than decoding for small frames); a monotonic map of the grey level, so dHash bits agree.
    The image views the frame's memory (rows line_size bytes apart): hash it while the frame lives."""
    if frame.format.name in PLANAR_YUV:
        plane = frame.planes[0]
        size = (plane.width, plane.height)
        return Image.frombuffer("L", size, plane, "raw", "L", plane.line_size, 1)
    return frame.to_ndarray(format="gray")


def video_frame_hashes(path: str, num_frames: int) -> list[int]:
    """dHashes of `num_frames` evenly spaced frames of a video (all frames if it is shorter).

    One container open and grey frames straight from the decoder: this runs once per video row, so
    it is the largest cost of build-prompts after retrieval itself. The decoder runs on one thread:
    callers decode many videos in parallel (a thread pool; PyAV releases the GIL while decoding), and
    FFmpeg's own per-decoder threads would only oversubscribe the cores and cost a start-up per video.
    """
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            available = stream.frames  # from the container header; 0 when unknown
            count = min(num_frames, available) if available > 0 else num_frames
            wanted = (
                {round(i * (available - 1) / max(count - 1, 1)) for i in range(count)}
                if available > 0
                else None
            )
            hashes = []
            for index, frame in enumerate(container.decode(stream)):
                if wanted is None or index in wanted:
                    hashes.append(dhash(_luma(frame)))
                if len(hashes) == count:
                    break
    except (av.FFmpegError, OSError, IndexError, ValueError) as err:
        raise MediaError(f"{path}: cannot decode video ({err}); the file is truncated or corrupt") from None
    if not hashes:
        raise MediaError(f"{path}: the video has no frames")
    return hashes


def normalise_text(text: str) -> str:
    return " ".join(text.casefold().split())


def cover_query_terms(
    hits: list, query_terms: set[str], terms_of: Callable[[str], list[str]], k: int
) -> list:
    """k hits, preferring (in score order) hits that match a query term no earlier pick matched.

    Plain top-k fills a two-subject caption's examples with the subject whose images score a bit
    higher; covering every query term first gives each named subject (and the scene) an example.
    The result stays in score order.
    """
    covered: set[str] = set()
    first, rest = [], []
    for hit in hits:
        terms = query_terms.intersection(terms_of(hit.text))
        if terms - covered and len(first) < k:
            first.append(hit)
            covered |= terms
        else:
            rest.append(hit)
    chosen = {id(h) for h in (first + rest)[:k]}
    return [h for h in hits if id(h) in chosen]


@dataclass
class HitFilter:
    """Keeps at most k hits of one query: score >= min_score, readable, no near-copy of the video, no repeats."""

    k: int
    min_score: float = 0.0
    dedup_hamming: int = 4

    def _cheap_reason(self, hit, images: set[str], texts: set[str]) -> str:
        """Why a hit is dropped before its image is hashed ("" when it must be hashed)."""
        if hit.score < self.min_score:
            return f"below_min_score: {hit.score:.4g} < {self.min_score:g}"
        if hit.image in images:
            return "duplicate_image"
        if normalise_text(hit.text) in texts:
            return "duplicate_text"
        return ""

    def images_to_hash(self, hits: list, diversify: bool) -> list[str]:
        """The images `select` hashes when no hit is dropped as leakage or unreadable (the usual case),
        so a caller can hash them ahead of `select`, in parallel, without hashing images it never needs."""
        wanted, images, texts = [], set(), set()
        for hit in hits:
            if len(wanted) == self.k and not diversify:
                break
            if not self._cheap_reason(hit, images, texts):
                wanted.append(hit.image)
                images.add(hit.image)
                texts.add(normalise_text(hit.text))
        return wanted

    def select(
        self,
        hits: list,
        frame_hashes: list[int],
        query_terms: set[str] | None = None,
        terms_of: Callable[[str], list[str]] | None = None,
        hash_image: Callable[[str], int] = image_hash,
    ) -> tuple[list, list[tuple[object, str]]]:
        """(kept hits, [(dropped hit, reason)]); hits arrive best first, so the best survivors are kept.

        With `query_terms` and `terms_of` (a tokenizer), the k survivors are chosen by `cover_query_terms`.
        `hash_image(path)` gives an image's dHash or raises MediaError (e.g. a lookup of hashes computed ahead).
        """
        diversify = query_terms is not None and terms_of is not None
        kept, dropped = [], []
        images, texts = set(), set()
        for hit in hits:
            if len(kept) == self.k and not diversify:
                break
            reason = self._cheap_reason(hit, images, texts)
            if not reason:
                try:  # hashing decodes the image: an unreadable file is caught here, not by the trainer
                    code = hash_image(hit.image)
                except MediaError as err:
                    reason = f"unreadable_image: {err}"
                else:
                    distance = min((hamming(code, f) for f in frame_hashes), default=64)
                    if distance <= self.dedup_hamming:
                        reason = f"leakage: image within Hamming {distance} of a frame of the video"
            if reason:
                dropped.append((hit, reason))
                continue
            kept.append(hit)
            images.add(hit.image)
            texts.add(normalise_text(hit.text))
        if diversify:
            kept = cover_query_terms(kept, query_terms, terms_of, self.k)
        return kept, dropped
