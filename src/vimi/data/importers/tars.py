"""WebDataset .tar shards (img2dataset's `--output_format webdataset`), read in order with the webdataset library.

A sample is one key's files (`000010023.jpg`, `.txt`, `.json`); its Row holds them by extension as bytes,
with `__key__`. A shard that ends early (an interrupted download or copy) yields the samples before the
damage and then one `Malformed` item for the rest; reading goes on with the next shard.
"""

from collections.abc import Iterator
from pathlib import Path

import webdataset as wds

from vimi.data.importers.tables import Item, Malformed, Row


def tar_rows(paths: list[Path]) -> Iterator[Item]:
    """Every sample of the shards, shard after shard, as Rows (fields: extension -> bytes, `__key__`)."""
    for path in paths:
        yield from _shard_rows(path)


def _shard_rows(path: Path) -> Iterator[Item]:
    errors: list[Exception] = []

    def on_error(err: Exception) -> bool:
        errors.append(err)  # webdataset may report one damage more than once, from each level it passes
        return True  # keep the samples read so far; the shard's reading then ends

    pipeline = wds.DataPipeline(wds.SimpleShardList([str(path)]), wds.tarfile_to_samples(handler=on_error))
    for sample in pipeline:
        yield Row(path.name, sample)
    if errors:
        first = errors[0]
        # webdataset appends " @ <stream>" to the message; the shard is named in `where` already.
        message = str(first.args[0]).split(" @ ")[0] if first.args else ""
        yield Malformed(
            path.name, f"unreadable_shard: {type(first).__name__}: {message}; the samples after it are lost"
        )
