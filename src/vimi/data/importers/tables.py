"""Streaming readers of the tables users hand to the importers: CSV/TSV (pyarrow.csv), JSON lines, Parquet.

Every reader yields `Row`s in file order, one batch in memory at a time, with text cells as raw bytes,
so a non-UTF-8 cell skips its row (`decode_text` finds it) instead of failing a batch; a line the parser
cannot make a row of (a CSV line with too many fields, a JSON line that is not an object) arrives as a
`Malformed` item at its place in the stream. A missing or headerless file is a DataError naming it.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vimi.errors import DataError
from vimi.retrieval.corpus import as_binary

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
BATCH_ROWS = 4096
CSV_BLOCK_BYTES = 1 << 16
"""Fixed, so that a re-run meets each malformed line at the same place in the stream as the first run; and
small: with 1 MiB blocks Arrow's live memory grew with the file (37 MB at 1M rows), with 64 KiB it stays
at 2.4 MB. A single row (a caption) must fit in a block."""


@dataclass(frozen=True)
class Row:
    """One input row: the file it came from and its cells (text as bytes, numbers as they were)."""

    where: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Malformed:
    """A line that is no row; it is reported as a skip and takes no row number."""

    where: str
    reason: str


Item = Row | Malformed


class Table:
    """One CSV/TSV, JSON-lines or Parquet file: its column names and its rows."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"input table not found: {self.path}")
        if self.path.suffix.lower() not in TABLE_SUFFIXES:
            raise DataError(f"{self.path}: unknown table format; use one of {', '.join(TABLE_SUFFIXES)}")
        self.columns: list[str] = _column_names(self.path)

    def rows(self, columns: list[str] | None = None) -> Iterator[Item]:
        """Every row in order, with only `columns` (all when None) among its values."""
        suffix = self.path.suffix.lower()
        if suffix == ".parquet":
            return _parquet_rows(self.path, columns)
        if suffix in JSON_LINES_SUFFIXES:
            return _json_lines(self.path, columns)
        return _csv_rows(self.path, columns or self.columns)


def _column_names(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_schema(path).names
        if suffix in JSON_LINES_SUFFIXES:
            names: dict[str, None] = {}
            for item in _json_lines(path, None):  # the first object's keys; later rows may add or lack some
                if isinstance(item, Row):
                    names.update(dict.fromkeys(item.values))
                    break
            return list(names)
        # Only the header matters here; rows of the first block are parsed too, so bad ones are let pass.
        with _open_csv(path, pacsv.ConvertOptions(check_utf8=False), lambda row: "skip") as reader:
            return reader.schema.names
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: not a readable table ({err})") from None


def _csv_options(path: Path, on_malformed=None) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions]:
    read = pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False)  # the BOM is skipped by Arrow
    parse = pacsv.ParseOptions(
        delimiter="\t" if path.suffix.lower() == ".tsv" else ",",
        newlines_in_values=True,  # captions with line breaks inside quotes
        invalid_row_handler=on_malformed,
    )
    return read, parse


def _open_csv(path: Path, convert: pacsv.ConvertOptions, on_malformed=None) -> pacsv.CSVStreamingReader:
    read, parse = _csv_options(path, on_malformed)
    return pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)


def _csv_rows(path: Path, columns: list[str]) -> Iterator[Item]:
    malformed: list[Malformed] = []

    def on_malformed(row) -> str:
        line = f"line {row.number}" if row.number is not None else "a line"
        malformed.append(
            Malformed(
                path.name,
                f"malformed_row: {line} has {row.actual_columns} fields, the header "
                f"{row.expected_columns}: {row.text[:120]!r}",
            )
        )
        return "skip"

    # Every column as binary: no type guessing, and a bad byte stays in its one cell.
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.binary()), include_columns=columns)
    try:
        with _open_csv(path, convert, on_malformed) as reader:
            for batch in reader:
                yield from malformed  # found while this batch was parsed, so they come before its rows
                malformed.clear()
                for values in batch.to_pylist():
                    yield Row(path.name, values)
            yield from malformed
    except pa.ArrowInvalid as err:
        raise DataError(f"{path}: cannot parse the CSV ({err}); fix the file (an unclosed quote?)") from None


def _json_lines(path: Path, columns: list[str] | None) -> Iterator[Item]:
    """JSON lines read with the json module, line by line: one bad line is one skip, not a failed block."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM
            if not raw.strip():
                continue
            # surrogateescape keeps invalid bytes as lone surrogates, which decode_text then reports per cell.
            try:
                values = json.loads(raw.decode("utf-8", "surrogateescape"))
            except json.JSONDecodeError as err:
                yield Malformed(path.name, f"malformed_row: line {number} is not JSON ({err.msg})")
                continue
            if not isinstance(values, dict):
                yield Malformed(path.name, f"malformed_row: line {number} is a JSON {type(values).__name__}")
                continue
            if columns is not None:
                values = {name: values.get(name) for name in columns}
            yield Row(path.name, values)


def _parquet_rows(path: Path, columns: list[str] | None) -> Iterator[Item]:
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            table = pa.Table.from_batches([batch])
            for values in as_binary(table, table.column_names).to_pylist():
                yield Row(path.name, values)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: unreadable Parquet file ({err})") from None
