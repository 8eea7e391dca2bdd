import numpy as np
from PIL import Image

from vimi.retrieval.filters import HitFilter, cover_query_terms, dhash, hamming, video_frame_hashes
from vimi.retrieval.sharded import Hit

from .corpora import pattern


def test_dhash_is_stable_under_resize_and_recompression_and_separates_different_images(tmp_path):
    image = pattern(7, size=64)
    smaller = np.asarray(Image.fromarray(image).resize((40, 40), Image.Resampling.BILINEAR))
    Image.fromarray(image).save(tmp_path / "x.jpg", quality=60)
    jpeg = np.asarray(Image.open(tmp_path / "x.jpg").convert("RGB"))
    assert hamming(dhash(image), dhash(smaller)) <= 4
    assert hamming(dhash(image), dhash(jpeg)) <= 4
    others = [hamming(dhash(image), dhash(pattern(seed, size=64))) for seed in range(20, 40)]
    assert min(others) > 10  # unrelated images differ in many of the 64 bits


def test_video_frame_hashes_are_the_frames_hashes(videos):
    hashes = video_frame_hashes(str(videos / "clips" / "v1.mp4"), 8)
    assert len(hashes) == 4  # a 4-frame clip gives all its frames
    assert max(hamming(h, dhash(pattern(1001))) for h in hashes) <= 4  # mp4 coding keeps the hash


def hit(row, text, image, score):
    return Hit(row, f"m{row}", text, image, score)


def test_hit_filter_drops_leakage_duplicates_low_scores_and_unreadable_images(tmp_path):
    paths = {}
    for name, seed in [("leak", 1), ("a", 2), ("b", 3), ("c", 4)]:
        paths[name] = str(tmp_path / f"{name}.png")
        Image.fromarray(pattern(seed)).save(paths[name])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    hits = [
        hit(0, "the leaked frame", paths["leak"], 9.0),
        hit(1, "a blicket", paths["a"], 8.0),
        hit(2, "A  Blicket", paths["b"], 7.0),  # same text as hit 1 up to case and spaces
        hit(3, "a blicket again", paths["a"], 6.0),  # same image as hit 1
        hit(4, "broken file", str(tmp_path / "broken.png"), 5.0),
        hit(5, "a dax", paths["c"], 4.0),
        hit(6, "weak", paths["b"], 0.5),
    ]
    frames = [dhash(pattern(1))]
    kept, dropped = HitFilter(k=3, min_score=1.0, dedup_hamming=4).select(hits, frames)
    assert [h.row for h in kept] == [1, 5]
    reasons = {h.row: why.split(":")[0] for h, why in dropped}
    assert reasons == {
        0: "leakage",
        2: "duplicate_text",
        3: "duplicate_image",
        4: "unreadable_image",
        6: "below_min_score",
    }


def test_hit_filter_stops_at_k():
    hits = [hit(i, f"text {i}", f"/img{i}.png", 10.0 - i) for i in range(10)]
    kept, dropped = HitFilter(k=0).select(hits, [])
    assert kept == [] and dropped == []


def test_cover_query_terms_gives_every_named_subject_an_example():
    hits = [
        hit(0, "a dax in the desert", "/0", 9),
        hit(1, "a dax on the beach", "/1", 8),
        hit(2, "a dax", "/2", 7),
        hit(3, "a wug", "/3", 6),
        hit(4, "the desert", "/4", 5),
    ]
    kept = cover_query_terms(hits, {"dax", "wug", "desert"}, str.split, k=3)
    assert [h.row for h in kept] == [0, 1, 3]  # wug covered; then filled by score; still in score order
    assert [h.row for h in cover_query_terms(hits, {"dax"}, str.split, k=2)] == [0, 1]
