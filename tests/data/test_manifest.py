import itertools
import json
import tarfile

import pytest
import torch

from vimi.data.image_io import read_image, save_image
from vimi.data.manifest import (
    INDEX_FILE,
    ManifestDataset,
    ManifestWriter,
    count_rows,
    iter_records,
    read_index,
)
from vimi.data.video_io import read_video, write_mp4
from vimi.data.webdataset_shards import INDEX_FILE as WDS_INDEX
from vimi.data.webdataset_shards import export_webdataset, webdataset_reader
from vimi.errors import DataError, MediaError


def make_records(n: int) -> list[dict]:
    return [
        {"id": f"r{i:03d}", "caption": f"caption {i}", "boxes": [[i * 0.1, 0.5]], "n": i} for i in range(n)
    ]


@pytest.fixture
def manifest(tmp_path):
    """25 rows in 3 shards (10 + 10 + 5)."""
    with ManifestWriter(tmp_path / "m", shard_size=10, extra={"kind": "test"}) as writer:
        writer.write_many(make_records(25))
    return tmp_path / "m"


def ids(rows) -> list[str]:
    return [row["id"] for row in rows]


def loader_ids(dataset, num_workers: int) -> list[str]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers)
    return ids(loader)


# ---- Parquet manifests ------------------------------------------------------------------------


def test_round_trip_keeps_rows_types_and_order(manifest):
    index = read_index(manifest)
    assert index["rows"] == 25 and [s["rows"] for s in index["shards"]] == [10, 10, 5]
    assert index["kind"] == "test"  # extra metadata travels in the index
    assert list(iter_records(manifest)) == make_records(25)
    assert count_rows(manifest) == 25
    assert next(iter_records(manifest, columns=["id"])) == {"id": "r000"}


def test_iter_records_streams_shard_by_shard(manifest):
    rows = iter_records(manifest, batch_rows=4)
    assert next(rows)["id"] == "r000"
    (manifest / "part-00002.parquet").unlink()  # not opened yet: the first two shards still stream
    assert len(list(itertools.islice(rows, 19))) == 19
    with pytest.raises(DataError, match=r"part-00002\.parquet"):
        next(rows)


def test_all_null_column_in_first_shard_takes_later_type(tmp_path):
    rows = [{"id": "a", "subject": None, "boxes": []}, {"id": "b", "subject": "dog", "boxes": [[0.1, 0.2]]}]
    with ManifestWriter(tmp_path, shard_size=1) as writer:
        writer.write_many(rows)
    assert list(iter_records(tmp_path)) == rows


def test_inconsistent_types_raise_data_error(tmp_path):
    with (
        pytest.raises(DataError, match=r"part-00001\.parquet: records do not match"),
        ManifestWriter(tmp_path, shard_size=1) as writer,
    ):
        writer.write_many([{"n": 1}, {"n": "one"}])


def test_folder_without_index_is_refused(manifest):
    (manifest / INDEX_FILE).unlink()
    with pytest.raises(DataError, match="incomplete"):
        list(iter_records(manifest))
    with pytest.raises(DataError, match="incomplete"):
        ManifestDataset(manifest)


@pytest.mark.parametrize("content", [b'{"format": "vimi-manifest", "shar', b"[]", b'{"format": "other"}'])
def test_corrupt_or_foreign_index_is_a_data_error_naming_it(manifest, content):
    (manifest / INDEX_FILE).write_bytes(content)
    with pytest.raises(DataError, match=r"manifest\.json: (corrupt|not a) vimi manifest index"):
        read_index(manifest)


def test_exception_inside_writer_leaves_no_index(tmp_path):
    with pytest.raises(RuntimeError), ManifestWriter(tmp_path, shard_size=2) as writer:
        writer.write_many(make_records(5))
        raise RuntimeError("killed mid-write")
    assert not (tmp_path / INDEX_FILE).exists()
    assert (tmp_path / "part-00000.parquet").exists()  # the shards so far survive for inspection
    with pytest.raises(DataError, match="incomplete"):
        read_index(tmp_path)


def test_failed_rewrite_does_not_leave_the_old_index(manifest):
    with pytest.raises(RuntimeError), ManifestWriter(manifest, shard_size=10) as writer:
        writer.write_many(make_records(12))  # replaces part-00000 with new content...
        raise RuntimeError("killed")
    with pytest.raises(DataError, match="incomplete"):  # ...so the old index must be gone
        read_index(manifest)


@pytest.mark.parametrize("shard_size", [5, 30])  # 5 shards >= readers, or 1 shard < readers
def test_dataloader_workers_split_without_overlap(tmp_path, shard_size):
    with ManifestWriter(tmp_path, shard_size=shard_size) as writer:
        writer.write_many(make_records(25))
    got = loader_ids(ManifestDataset(tmp_path), num_workers=2)
    assert sorted(got) == ids(make_records(25))  # every row exactly once


@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_split_without_overlap(manifest, shuffle):
    per_rank = [ids(ManifestDataset(manifest, shuffle=shuffle, rank=r, world_size=3)) for r in range(3)]
    assert all(per_rank)
    assert sorted(itertools.chain(*per_rank)) == ids(make_records(25))


def test_ranks_times_workers_cover_everything(manifest):
    per_rank = [loader_ids(ManifestDataset(manifest, rank=r, world_size=2), num_workers=2) for r in range(2)]
    assert sorted(per_rank[0] + per_rank[1]) == ids(make_records(25))


def test_shuffle_is_deterministic_for_a_seed(manifest):
    first = ids(ManifestDataset(manifest, shuffle=True, seed=3, shuffle_buffer=8))
    assert first == ids(ManifestDataset(manifest, shuffle=True, seed=3, shuffle_buffer=8))
    assert first != ids(make_records(25)) and sorted(first) == ids(make_records(25))
    assert first != ids(ManifestDataset(manifest, shuffle=True, seed=4, shuffle_buffer=8))
    next_epoch = ManifestDataset(manifest, shuffle=True, seed=3, shuffle_buffer=8)
    next_epoch.set_epoch(1)
    assert ids(next_epoch) != first


# ---- WebDataset export ------------------------------------------------------------------------


@pytest.fixture
def media_manifest(tmp_path):
    """6 rows, each with a lossless mp4 and a PNG beside the manifest (relative paths)."""
    root = tmp_path / "media"
    generator = torch.Generator().manual_seed(0)
    rows = []
    for i in range(6):
        write_mp4(torch.rand(3, 4, 16, 16, generator=generator) * 2 - 1, root / f"v{i}.mp4", lossless=True)
        save_image(torch.rand(3, 8, 8, generator=generator) * 2 - 1, root / "img" / f"i{i}.png")
        rows.append(
            {"id": f"clip.{i}", "caption": f"clip {i}", "video": f"v{i}.mp4", "image": f"img/i{i}.png"}
        )
    with ManifestWriter(root, shard_size=4) as writer:
        writer.write_many(rows)
    return root


def test_webdataset_round_trip(media_manifest, tmp_path):
    out = tmp_path / "wds"
    index_path = export_webdataset(media_manifest, out, media_columns=["video", "image"], shard_size=2)
    index = json.loads(index_path.read_text())
    assert index["samples"] == 6 and [s["file"] for s in index["shards"]] == [
        "shard-00000.tar",
        "shard-00001.tar",
        "shard-00002.tar",
    ]
    with tarfile.open(out / "shard-00000.tar") as tar:
        names = sorted(tar.getnames())
    assert names == sorted(f"00000000{i}.{f}" for i in range(2) for f in ("json", "video.mp4", "image.png"))
    samples = list(webdataset_reader(out))
    assert [s["id"] for s in samples] == [f"clip.{i}" for i in range(6)]  # ids with dots survive
    for sample in samples:
        stem = sample["id"].split(".")[1]
        assert sample["video"] == (media_manifest / f"v{stem}.mp4").read_bytes()
        assert sample["caption"] == f"clip {stem}"
    first = samples[0]
    torch.testing.assert_close(read_video(first["video"], 4), read_video(media_manifest / "v0.mp4", 4))
    torch.testing.assert_close(read_image(first["image"]), read_image(media_manifest / "img/i0.png"))


def test_webdataset_splits_ranks_and_workers(media_manifest, tmp_path):
    out = tmp_path / "wds"
    export_webdataset(media_manifest, out, media_columns=["video"], shard_size=1)  # 6 shards
    per_rank = [
        loader_ids(webdataset_reader(out, rank=r, world_size=2), num_workers=2)  # 4 readers
        for r in range(2)
    ]
    assert all(per_rank) and not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == [f"clip.{i}" for i in range(6)]


def test_webdataset_shuffle_is_deterministic(media_manifest, tmp_path):
    out = tmp_path / "wds"
    export_webdataset(media_manifest, out, media_columns=[], shard_size=1)
    orders = [ids(webdataset_reader(out, shuffle=True, seed=s)) for s in (1, 1, 2)]
    assert orders[0] == orders[1] and sorted(orders[0]) == [f"clip.{i}" for i in range(6)]
    assert orders[0] != orders[2]


def test_webdataset_refuses_incomplete_export_and_missing_media(media_manifest, tmp_path):
    out = tmp_path / "wds"
    export_webdataset(media_manifest, out, media_columns=["video"], shard_size=4)
    (out / WDS_INDEX).unlink()
    with pytest.raises(DataError, match="incomplete"):
        webdataset_reader(out)
    (media_manifest / "v3.mp4").unlink()
    with pytest.raises(MediaError, match=r"v3\.mp4: file not found \(row 3, column 'video'\)"):
        export_webdataset(media_manifest, out, media_columns=["video"], shard_size=4)
    assert not (out / WDS_INDEX).exists()
    with pytest.raises(DataError, match="'audio' is not in the manifest"):
        export_webdataset(media_manifest, out, media_columns=["audio"])


def test_webdataset_corrupt_index_is_a_data_error(media_manifest, tmp_path):
    out = tmp_path / "wds"
    export_webdataset(media_manifest, out, media_columns=["video"], shard_size=4)
    (out / WDS_INDEX).write_text('{"format": "vimi-webdata')
    with pytest.raises(DataError, match=r"wds_index\.json: corrupt vimi WebDataset index"):
        webdataset_reader(out)
