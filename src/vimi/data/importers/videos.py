"""`vimi data import-videos`: a video-text table (WebVid's CSV, or a CSV/JSONL/Parquet of video, caption) to a
video-text manifest (id, caption, video, num_frames, fps, width, height).

Columns are found by name unless named with a flag: the id from id/videoid/video_id/key/uid (rows are
numbered when there is none), the caption from caption/name/text/title, the video from
video/path/video_path/file/filepath, or WebVid's download layout MEDIA_ROOT/<page_dir>/<videoid>.mp4
when the table has page_dir and an id instead. Relative paths resolve against the media root (default:
the table's folder); manifest rows hold paths relative to the manifest folder, and the videos stay where
they are.

A row is kept when its id and caption are clean UTF-8 text, its video opens, every frame its header
promises is in the file (an interrupted download keeps the header of the whole video), and one training
clip fits it by the trainer's own rule (data.num_frames, frame_stride, target_fps).
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from vimi.config import DataConfig, VimiConfig
from vimi.data.importers.columns import (
    ID_COLUMNS,
    IdColumn,
    media_folder,
    pick_column,
    relative_to,
    text_cell,
)
from vimi.data.importers.job import import_job, run_import
from vimi.data.importers.tables import Row, Table
from vimi.data.video_io import clip_indices, scan_video
from vimi.errors import DataError, MediaError
from vimi.retrieval.corpus import resolve_media

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("caption", pa.string()),
        ("video", pa.string()),
        ("num_frames", pa.int64()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)
CAPTION_COLUMNS = ("caption", "name", "text", "title")
VIDEO_COLUMNS = ("video", "path", "video_path", "file", "filepath")


@dataclass(frozen=True)
class VideoColumns:
    id: str | None
    caption: str
    video: str | None
    """A path column; None means WebVid's layout, <page_dir>/<id>.mp4."""
    page_dir: str | None


def find_video_columns(
    table: Table, id_column: str | None, caption_column: str | None, video_column: str | None
) -> VideoColumns:
    names, path = table.columns, table.path
    caption = pick_column(path, names, caption_column, CAPTION_COLUMNS, "--caption-column", required=True)
    item_id = pick_column(path, names, id_column, ID_COLUMNS, "--id-column", required=False)
    video = pick_column(path, names, video_column, VIDEO_COLUMNS, "--video-column", required=False)
    if video is None and not ("page_dir" in names and item_id is not None):
        raise DataError(
            f"{path}: no video path column ({', '.join(VIDEO_COLUMNS)}) and no WebVid page_dir + videoid "
            f"columns; the table has {', '.join(names)} (name the path column with --video-column)"
        )
    return VideoColumns(item_id, caption, video, "page_dir" if video is None else None)


@dataclass
class VideoTableMapping(IdColumn):
    """Rows of a video-text table -> video-text manifest records."""

    columns: VideoColumns
    media_root: Path
    out: Path
    data: DataConfig
    name: str = "import_videos"
    schema: pa.Schema = SCHEMA

    def check(self, row: Row, number: int, item_id: str, shard: str) -> dict | str:
        caption, reason = text_cell(row.values, self.columns.caption, "caption")
        if reason:
            return reason
        path, reason = self._video_path(row.values, item_id)
        if reason:
            return reason
        try:
            info, frames = scan_video(path)
        except MediaError as err:
            return f"unreadable_video: {err}"
        if frames < info.num_frames:
            return f"truncated_video: {path}: the header promises {info.num_frames} frames, the file holds {frames}"
        data = self.data
        if data.target_fps > 0 and info.fps <= 0:
            return (
                f"unreadable_video: {path}: no frame rate, so no clip at data.target_fps={data.target_fps:g}"
            )
        try:
            clip_indices(frames, data.num_frames, data.frame_stride, info.fps, data.target_fps, name=path)
        except MediaError:
            return (
                f"too_short: {path}: {frames} frames at {info.fps:g} fps hold no clip of data.num_frames="
                f"{data.num_frames} (frame_stride {data.frame_stride}, target_fps {data.target_fps:g})"
            )
        return {
            "id": item_id,
            "caption": caption,
            "video": relative_to(path, self.out),
            "num_frames": frames,
            "fps": info.fps,
            "width": info.width,
            "height": info.height,
        }

    def _video_path(self, values: dict, item_id: str) -> tuple[str | None, str]:
        if self.columns.video is not None:
            return resolve_media(self.media_root, values.get(self.columns.video))
        page_dir, reason = text_cell(values, self.columns.page_dir, "page_dir")
        if reason:
            return None, reason
        return resolve_media(self.media_root, f"{page_dir}/{item_id}.mp4")


def import_videos(
    table_path: str | Path,
    out: str | Path,
    cfg: VimiConfig,
    media_root: str | Path | None = None,
    id_column: str | None = None,
    caption_column: str | None = None,
    video_column: str | None = None,
    progress: bool = True,
) -> dict:
    """Import (or resume importing) a video-text table into the manifest folder `out`; returns the report."""
    table = Table(Path(table_path).resolve())
    columns = find_video_columns(table, id_column, caption_column, video_column)
    root = media_folder(media_root, table.path.parent)
    out = Path(out).resolve()
    clip = {k: getattr(cfg.data, k) for k in ("num_frames", "frame_stride", "target_fps")}
    settings = dataclasses.asdict(columns) | {"media_root": str(root), "clip": clip}
    job = import_job(out, cfg.importer, "video-text", table.path, [table.path], settings)
    needed = [c for c in (columns.id, columns.caption, columns.video, columns.page_dir) if c]
    ids = [columns.id] if columns.id else needed
    mapping = VideoTableMapping(columns, root, out, cfg.data)
    return run_import(lambda: table.rows(needed), mapping, job, progress, lambda: table.rows(ids))
