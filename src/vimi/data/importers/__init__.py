"""Importers: the datasets people have (a WebVid-style CSV, an img2dataset folder, a plain table) as vimi
manifests, streamed, resumable, with every dropped row counted in a skips file.

    tables.py, tars.py   read the formats (pyarrow CSV/Parquet, JSON lines, webdataset tar shards)
    columns.py           which column holds what, and the per-cell checks
    videos.py, memory.py map rows to video-text and image-text records, checking the media files
    job.py               the resumable, sharded writing of the manifest, its report and skips file
"""

from vimi.data.importers.memory import import_memory
from vimi.data.importers.videos import import_videos

__all__ = ["import_memory", "import_videos"]
