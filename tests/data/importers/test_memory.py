"""`vimi data import-memory`: img2dataset folders (Parquet + files, webdataset tars) and plain image-text tables."""

import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from vimi.cli import main
from vimi.config import load_config
from vimi.data.importers import import_memory
from vimi.data.importers.memory import TarMapping
from vimi.data.manifest import iter_records, read_index

from .conftest import jpeg_bytes, tree_bytes


def img2dataset_files(root, real_photos):
    """An img2dataset `--output_format files` folder: two shards, a failed download, a truncated JPEG, a
    listed image that is not on disk, and a key that the second shard repeats."""
    photos = [jpeg_bytes(real_photos[f"{name}.png"]) for name in ("astronaut", "cat", "coffee", "rocket")]
    shards = {
        "00000": [
            ("000000000", "an astronaut in a white suit", "success", None, photos[0]),
            ("000000001", "a cat looks up", "success", None, photos[1]),
            ("000000002", "a page that moved", "failed_to_download", "HTTP Error 404: Not Found", None),
            ("000000003", "a truncated jpeg", "success", None, photos[2][:300]),
        ],
        "00001": [
            ("000010000", "a cup of coffee", "success", None, photos[2]),
            ("000010001", "an image deleted after the download", "success", None, None),
            ("000000001", "the key of a cat again", "success", None, photos[1]),
            ("000010003", "a rocket on the launch pad", "success", None, photos[3]),
        ],
    }
    for shard, rows in shards.items():
        (root / shard).mkdir(parents=True)
        for key, *_, data in rows:
            if data is not None:
                (root / shard / f"{key}.jpg").write_bytes(data)
        columns = ["key", "caption", "status", "error_message"]
        table = pa.table({c: [row[i] for row in rows] for i, c in enumerate(columns)})
        table = table.append_column("url", pa.array([f"https://example.com/{row[0]}.jpg" for row in rows]))
        pq.write_table(table, root / f"{shard}.parquet")
        (root / f"{shard}_stats.json").write_text("{}")
    return root


def test_img2dataset_files_folder(tmp_path, real_photos):
    source = img2dataset_files(tmp_path / "laion", real_photos)
    out = tmp_path / "memory"
    report = import_memory(source, out, load_config(), progress=False)
    rows = list(iter_records(out))
    assert [(r["id"], r["text"]) for r in rows] == [
        ("000000000", "an astronaut in a white suit"),
        ("000000001", "a cat looks up"),
        ("000010000", "a cup of coffee"),
        ("000010003", "a rocket on the launch pad"),
    ]
    assert (out / rows[0]["image"]).resolve() == (source / "00000" / "000000000.jpg").resolve()
    assert (rows[0]["width"], rows[0]["height"]) == (48, 48)
    lines = (out / "import_memory.skips.jsonl").read_text().splitlines()
    skips = {skip["id"]: skip for skip in map(json.loads, lines)}
    assert skips["000000002"]["reason"] == "download_failed: HTTP Error 404: Not Found"
    assert skips["000000003"]["reason"].startswith("unreadable_image:")
    assert skips["000010001"]["reason"].startswith("missing_media:")
    assert skips["000010001"]["where"] == "00001.parquet"
    assert skips["000000001"]["reason"].startswith("duplicate_id:") and skips["000000001"]["row"] == 6
    assert report["input_rows"] == 8 and report["rows"] == 4 and report["skipped"] == 4
    assert read_index(out)["kind"] == "image-text"


def write_tars(root, real_photos):
    """img2dataset `--output_format webdataset` shards; the last one was cut off mid-sample."""
    photos = {
        name: jpeg_bytes(real_photos[f"{name}.png"]) for name in ("astronaut", "cat", "coffee", "rocket")
    }
    root.mkdir()
    samples = [
        [
            {"__key__": "000000000", "jpg": photos["astronaut"], "txt": b"an astronaut", "json": b"{}"},
            {"__key__": "000000001", "jpg": photos["cat"], "json": json.dumps({"caption": "a cat"}).encode()},
            {"__key__": "000000002", "txt": b"a sample without its image"},
        ],
        [
            {"__key__": "000010000", "jpg": b"\xff\xd8 not a jpeg", "txt": b"a broken image"},
            {"__key__": "000010001", "png": real_photos["rocket.png"].read_bytes(), "txt": b"a rocket"},
            {"__key__": "000010002", "jpg": photos["coffee"], "txt": b"  \n "},
        ],
        [
            {"__key__": "000020000", "jpg": photos["coffee"], "txt": b"a cup of coffee"},
            {"__key__": "000020001", "jpg": photos["rocket"] * 4, "txt": b"cut off here"},
        ],
    ]
    for index, shard in enumerate(samples):
        with wds.TarWriter(str(root / f"{index:05d}.tar")) as writer:
            for sample in shard:
                writer.write(sample)
    last = root / "00002.tar"
    with tarfile.open(last) as tar:
        cut = tar.getmember("000020001.jpg").offset_data + 100  # inside the second sample's image
    last.write_bytes(last.read_bytes()[:cut])
    return root


def test_img2dataset_tar_shards_have_their_images_written_out(tmp_path, real_photos):
    source = write_tars(tmp_path / "laion_wds", real_photos)
    out = tmp_path / "memory"
    report = import_memory(source, out, load_config(), progress=False)
    rows = list(iter_records(out))
    assert [(r["id"], r["text"]) for r in rows] == [
        ("000000000", "an astronaut"),
        ("000000001", "a cat"),  # the caption from the sample's .json
        ("000010001", "a rocket"),
        ("000020000", "a cup of coffee"),
    ]
    assert rows[2]["image"] == "media/part-00000/000000004.png"
    assert (out / rows[2]["image"]).read_bytes() == real_photos["rocket.png"].read_bytes()
    assert sorted(p.name for p in (out / "media" / "part-00000").iterdir()) == [
        "000000000.jpg", "000000001.jpg", "000000004.png", "000000006.jpg"
    ]  # fmt: skip
    assert report["skipped_by_reason"] == {
        "empty_text": 1,
        "missing_media": 1,
        "unreadable_image": 1,
        "unreadable_shard": 1,
    }
    assert report["input_rows"] == 7  # the cut-off sample never became a row; the shard's damage is listed


def test_an_import_that_failed_midway_resumes_to_the_same_bytes(tmp_path, real_photos, monkeypatch):
    source = write_tars(tmp_path / "laion_wds", real_photos)
    cfg = load_config(None, ["importer.shard_size=2", "importer.threads=2"])
    import_memory(source, tmp_path / "whole", cfg, progress=False)
    check = TarMapping.check

    def fail_at_row_4(self, row, number, item_id, shard):
        if number == 4:
            raise OSError("disk full")
        return check(self, row, number, item_id, shard)

    monkeypatch.setattr(TarMapping, "check", fail_at_row_4)
    with pytest.raises(OSError, match="disk full"):
        import_memory(source, tmp_path / "failed", cfg, progress=False)
    assert sorted(p.name for p in (tmp_path / "failed").glob("*.done.json")) == [
        "part-00000.done.json", "part-00001.done.json"
    ]  # fmt: skip
    monkeypatch.setattr(TarMapping, "check", check)
    import_memory(source, tmp_path / "failed", cfg, progress=False)
    assert tree_bytes(tmp_path / "failed") == tree_bytes(tmp_path / "whole")


def test_plain_image_text_table_through_the_command(tmp_path, real_photos, capsys):
    table = tmp_path / "pairs.csv"
    lines = ["image,caption,id", "astronaut.png,an astronaut,a", "cat.jpg,a cat,b", "dog.jpg,a dog,c"]
    table.write_text("\n".join(lines) + "\n")
    root = real_photos["cat.jpg"].parent
    out = tmp_path / "memory"
    argv = ["data", "import-memory", str(table), "--out", str(out), "--media-root", str(root)]
    assert main([*argv, "--no-progress"]) == 0
    assert "2 of 3 rows imported" in capsys.readouterr().out
    assert [(r["id"], r["text"]) for r in iter_records(out)] == [("a", "an astronaut"), ("b", "a cat")]
    assert main([*argv[:2], str(tmp_path), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "no .tar or .parquet files" in capsys.readouterr().err
    assert main([*argv, "--image-column", "photo"]) == 2
    assert "--image-column 'photo': no such column" in capsys.readouterr().err
