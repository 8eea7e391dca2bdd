"""`vimi data import-memory`: an image-text corpus to the retrieval memory's manifest (id, text, image, width, height).

Three inputs:
  * an img2dataset folder with `--output_format files`: SHARD.parquet (key, caption, status, error_message)
    beside SHARD/KEY.jpg; rows whose download failed are skipped with img2dataset's error message;
  * an img2dataset folder with `--output_format webdataset`: SHARD.tar of KEY.jpg + KEY.txt; the images are
    written out to OUT/media/<shard>/<row>.<ext>, since memory rows point at image files;
  * a table (CSV/TSV/JSONL/Parquet) of image, text (and optionally id) columns; relative image paths resolve
    against the media root (default: the table's folder).

A row is kept when its id and text are clean UTF-8 text and its image decodes (fully: a truncated JPEG
opens but fails to load).
"""

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from vimi.config import VimiConfig
from vimi.data.image_io import MediaSource, load_pil_image
from vimi.data.importers.columns import (
    ID_COLUMNS,
    IdColumn,
    media_folder,
    pick_column,
    relative_to,
    text_cell,
)
from vimi.data.importers.job import MEDIA_DIR, import_job, run_import
from vimi.data.importers.tables import Item, Row, Table
from vimi.data.importers.tars import tar_rows
from vimi.errors import DataError, MediaError
from vimi.retrieval.corpus import decode_id, resolve_media
from vimi.retrieval.tokenize import decode_text
from vimi.utils.atomic import atomic_path

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("image", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)
TEXT_COLUMNS = ("text", "caption", "TEXT")
IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filepath")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
"""img2dataset's encode formats, in the order an image file is looked for."""


def _image_record(item_id: str, text: str, source: MediaSource, stored: str) -> dict | str:
    """The memory record of an image that decodes, or the reason it is skipped."""
    try:
        image = load_pil_image(source)
    except MediaError as err:
        return f"unreadable_image: {err}"
    return {"id": item_id, "text": text, "image": stored, "width": image.width, "height": image.height}


@dataclass(frozen=True)
class ImageColumns:
    id: str | None
    text: str
    image: str | None
    """A path column; None means img2dataset's layout, <parquet stem>/<key>.<ext>."""
    status: str | None
    """img2dataset's download status ("success" or why not)."""


@dataclass
class ImageTableMapping(IdColumn):
    """Rows of an image-text table, or of img2dataset's Parquet files -> memory records."""

    columns: ImageColumns
    media_root: Path
    out: Path
    name: str = "import_memory"
    schema: pa.Schema = SCHEMA

    def check(self, row: Row, number: int, item_id: str, shard: str) -> dict | str:
        values = row.values
        if self.columns.status is not None and values.get(self.columns.status) != b"success":
            error, _ = decode_text(values.get("error_message"))
            return f"download_failed: {error or decode_text(values.get(self.columns.status))[0]}"
        text, reason = text_cell(values, self.columns.text, "text")
        if reason:
            return reason
        path, reason = self._image_path(row, item_id)
        if reason:
            return reason
        return _image_record(item_id, text, path, relative_to(path, self.out))

    def _image_path(self, row: Row, item_id: str) -> tuple[str | None, str]:
        if self.columns.image is not None:
            return resolve_media(self.media_root, row.values.get(self.columns.image))
        folder = self.media_root / Path(row.where).stem
        for suffix in IMAGE_SUFFIXES:
            if (folder / f"{item_id}{suffix}").is_file():
                return str(folder / f"{item_id}{suffix}"), ""
        return None, f"missing_media: {folder / item_id}.{{{','.join(s[1:] for s in IMAGE_SUFFIXES)}}}"


@dataclass
class TarMapping:
    """Samples of img2dataset's webdataset shards -> memory records, the images written out as files."""

    out: Path
    name: str = "import_memory"
    schema: pa.Schema = SCHEMA
    has_ids: bool = True

    def row_id(self, row: Row, number: int) -> tuple[str | None, str]:
        return decode_id(row.values.get("__key__"))

    def check(self, row: Row, number: int, item_id: str, shard: str) -> dict | str:
        values = row.values
        text, reason = text_cell(values, "txt", "text")
        if "txt" not in values and "json" in values:  # no .txt: the caption inside the sample's .json
            try:
                caption = json.loads(values["json"]).get("caption")
            except (ValueError, AttributeError):
                caption = None
            text, reason = text_cell({"caption": caption}, "caption", "text")
        if reason:
            return reason
        suffix = next((s for s in IMAGE_SUFFIXES if s[1:] in values), None)
        if suffix is None:
            return f"missing_media: sample {item_id} holds no {'/'.join(IMAGE_SUFFIXES)} file"
        data = values[suffix[1:]]
        target = self.out / MEDIA_DIR / shard / f"{number:09d}{suffix}"
        record = _image_record(item_id, text, data, relative_to(target, self.out))
        if isinstance(record, dict):
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        return record


@dataclass
class _Input:
    """What an import reads: the mapping, the files (for the job's signature) and the row streams."""

    mapping: TarMapping | ImageTableMapping
    files: list[Path]
    read: Callable[[], Iterable[Item]]
    read_ids: Callable[[], Iterable[Item]] | None
    settings: dict


def import_memory(
    source: str | Path,
    out: str | Path,
    cfg: VimiConfig,
    media_root: str | Path | None = None,
    id_column: str | None = None,
    text_column: str | None = None,
    image_column: str | None = None,
    progress: bool = True,
) -> dict:
    """Import (or resume importing) an image-text corpus into the manifest folder `out`; returns the report."""
    source, out = Path(source).resolve(), Path(out).resolve()
    if not source.exists():
        raise DataError(f"input not found: {source}")
    flags = {"--id-column": id_column, "--text-column": text_column, "--image-column": image_column}
    tars = sorted(source.glob("*.tar")) if source.is_dir() else []
    if tars:
        given = [flag for flag, value in flags.items() if value is not None]
        if given or media_root is not None:
            raise DataError(f"{source}: {', '.join(given) or '--media-root'} does not apply to .tar shards")
        found = _Input(TarMapping(out), tars, lambda: tar_rows(tars), None, {})
    else:
        found = _table_input(source, out, media_root, id_column, text_column, image_column)
    job = import_job(out, cfg.importer, "image-text", source, found.files, found.settings)
    return run_import(found.read, found.mapping, job, progress, found.read_ids)


def _table_input(
    source: Path,
    out: Path,
    media_root: str | Path | None,
    id_column: str | None,
    text_column: str | None,
    image_column: str | None,
) -> _Input:
    """A table file, or an img2dataset folder's Parquet files, whose rows name image files."""
    tables = _tables(source)
    first, names = tables[0].path, tables[0].columns
    # img2dataset's Parquet names no image: the file is <shard>/<key>.<ext> beside it.
    img2dataset = source.is_dir() and image_column is None and not set(IMAGE_COLUMNS) & set(names)
    image = None
    if not img2dataset:
        image = pick_column(first, names, image_column, IMAGE_COLUMNS, "--image-column", required=True)
    columns = ImageColumns(
        id=pick_column(first, names, id_column, ID_COLUMNS, "--id-column", required=img2dataset),
        text=pick_column(first, names, text_column, TEXT_COLUMNS, "--text-column", required=True),
        image=image,
        status="status" if img2dataset and "status" in names else None,
    )
    root = media_folder(media_root, source if source.is_dir() else source.parent)
    needed = [c for c in (*dataclasses.astuple(columns), "error_message") if c and c in names]
    ids = [columns.id] if columns.id else needed

    def read(wanted: list[str]) -> Callable[[], Iterable[Item]]:
        return lambda: itertools.chain.from_iterable(table.rows(wanted) for table in tables)

    settings = dataclasses.asdict(columns) | {"media_root": str(root)}
    return _Input(
        ImageTableMapping(columns, root, out), [t.path for t in tables], read(needed), read(ids), settings
    )


def _tables(source: Path) -> list[Table]:
    """A table file, or an img2dataset folder's Parquet files (sorted)."""
    if source.is_file():
        return [Table(source)]
    parquets = sorted(source.glob("*.parquet"))
    if not parquets:
        raise DataError(
            f"{source}: no .tar or .parquet files; give an img2dataset output folder or an image-text table"
        )
    return [Table(path) for path in parquets]
