"""Which input column holds what: a name the user gave (checked), else the first of the usual names present,
and the per-cell checks every importer shares."""

import os
from pathlib import Path
from typing import Any

from vimi.data.importers.tables import Row
from vimi.errors import DataError
from vimi.retrieval.corpus import decode_id
from vimi.retrieval.tokenize import decode_text

ID_COLUMNS = ("id", "videoid", "video_id", "key", "uid")


def pick_column(
    source: Path, available: list[str], given: str | None, usual: tuple[str, ...], flag: str, required: bool
) -> str | None:
    """`given` if the table has it; else the first of `usual` it has; DataError naming the columns otherwise."""
    if given is not None:
        if given not in available:
            raise DataError(
                f"{source}: {flag} {given!r}: no such column; the table has {', '.join(available)}"
            )
        return given
    found = next((name for name in usual if name in available), None)
    if found is None and required:
        raise DataError(
            f"{source}: no column named {' or '.join(usual)}; the table has {', '.join(available)} "
            f"(name the column with {flag})"
        )
    return found


class IdColumn:
    """`has_ids` and `row_id` of a mapping whose `columns.id` names the id column; None: rows are numbered."""

    columns: Any

    @property
    def has_ids(self) -> bool:
        return self.columns.id is not None

    def row_id(self, row: Row, number: int) -> tuple[str | None, str]:
        if self.columns.id is None:
            return str(number), ""
        return decode_id(row.values.get(self.columns.id))


def text_cell(values: dict, column: str, what: str) -> tuple[str | None, str]:
    """A clean text cell (whitespace collapsed), or (None, "<kind>: <what>[: detail]")."""
    text, reason = decode_text(values.get(column))
    if text is not None:
        return text, ""
    kind, _, detail = reason.partition(":")
    return None, f"{kind}: {what}{':' + detail if detail else ''}"


def relative_to(path: str | Path, out: Path) -> str:
    """A media path as manifest rows hold it: relative to the manifest folder."""
    return os.path.relpath(path, out)


def media_folder(given: str | Path | None, default: Path) -> Path:
    """The folder relative media paths start from: --media-root, else `default`; DataError if it is none."""
    root = Path(given).resolve() if given is not None else default
    if not root.is_dir():
        raise DataError(f"--media-root {root}: no such folder")
    return root
