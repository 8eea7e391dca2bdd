"""`vimi data import-videos|import-memory`: the datasets people have, as vimi manifests.

vimi data import-videos TABLE --out DIR [--media-root DIR] [--id-column C] [--caption-column C] [--video-column C]
vimi data import-memory SOURCE --out DIR [--media-root DIR] [--id-column C] [--text-column C] [--image-column C]

Re-running the same command resumes an interrupted import. Skipped rows are counted in
OUT/import_*.report.json and listed, with their reasons, in OUT/import_*.skips.jsonl.
"""

import argparse

from vimi.cli import add_config_arguments


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", required=True, help="manifest folder to write; re-running the command resumes it"
    )
    parser.add_argument(
        "--media-root",
        default=None,
        help="folder that relative media paths start from (default: the input's folder)",
    )
    parser.add_argument(
        "--id-column", default=None, help="column of unique ids (default: id, videoid, key, ...)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="KIND", required=True)
    videos = sub.add_parser(
        "import-videos",
        help="a video-text table (WebVid CSV; CSV/TSV/JSONL/Parquet of video, caption) -> video-text manifest",
    )
    videos.add_argument("table", help="the table: .csv, .tsv, .jsonl or .parquet")
    videos.add_argument("--caption-column", default=None, help="default: caption, name, text or title")
    videos.add_argument(
        "--video-column",
        default=None,
        help="video paths (default: video, path, ...; else WebVid's MEDIA_ROOT/<page_dir>/<videoid>.mp4)",
    )
    _common(videos)
    memory = sub.add_parser(
        "import-memory",
        help="an img2dataset folder (Parquet + images, or .tar shards) or an image-text table -> memory manifest",
    )
    memory.add_argument("source", help="an img2dataset output folder, or a .csv/.tsv/.jsonl/.parquet table")
    memory.add_argument("--text-column", default=None, help="default: text, caption or TEXT")
    memory.add_argument(
        "--image-column", default=None, help="image paths (default: image, image_path, path, ...)"
    )
    _common(memory)


def run(args: argparse.Namespace) -> int:
    from vimi.config import load_config

    cfg = load_config(args.config, args.overrides)
    common = {"media_root": args.media_root, "id_column": args.id_column, "progress": not args.no_progress}
    if args.data_command == "import-videos":
        from vimi.data.importers import import_videos

        report = import_videos(
            args.table,
            args.out,
            cfg,
            caption_column=args.caption_column,
            video_column=args.video_column,
            **common,
        )
    else:
        from vimi.data.importers import import_memory

        report = import_memory(
            args.source, args.out, cfg, text_column=args.text_column, image_column=args.image_column, **common
        )
    reasons = ", ".join(f"{kind} {count}" for kind, count in report["skipped_by_reason"].items())
    print(
        f"{report['rows']} of {report['input_rows']} rows imported into {args.out}; "
        f"{report['skipped']} skipped{f' ({reasons})' if reasons else ''}, listed in {report['skips_file']}"
    )
    return 0
