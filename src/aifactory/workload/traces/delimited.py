"""Reading a delimited text trace (CSV, sacct's ``|``) into columns of raw strings.

Two paths, one result. The fast path hands the whole body to ``pyarrow.csv`` with every
column typed as a string, so a well-formed 80k-row trace is read in milliseconds; each
row is then exactly one non-empty physical line (values may not contain newlines), so a
row's line number can be recovered on demand for an error message. Anything the fast
parser rejects (ragged rows, stray quotes spanning lines, over-long rows) goes to the
slow path: Python's ``csv`` module row by row, which can skip a ragged row, count it,
and say on which line it was. Either way nothing but :class:`TraceError` escapes.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from aifactory.workload.traces.common import TraceError

_BOM = b"\xef\xbb\xbf"
_BLOCK = 1 << 24  # rows up to 16 MiB stay on the fast path
_NEWLINE = re.compile(rb"\r\n|\r|\n")


@dataclass
class Source:
    """Raw string columns of a delimited file, with enough to name any row's line."""

    name: str
    header: list[str]
    columns: dict[int, pl.Series]
    n_rows: int
    ordinal: np.ndarray
    bad_lines: list[int] = field(default_factory=list)
    _lines: np.ndarray | None = None
    _body: bytes = b""
    _header_line: int = 1

    def raw(self, index: int) -> pl.Series:
        """The raw strings of column ``index`` (empty strings where a row had none)."""
        return self.columns[index]

    def line_of(self, row: int) -> int:
        """1-based physical line of data row ``row`` (as numbered in the file)."""
        if self._lines is None:
            self._lines = _nonempty_lines(self._body, self._header_line)
        return int(self._lines[row])


def read_bytes(path: Path, name: str) -> bytes:
    """The file's bytes, or a :class:`TraceError` that says why not."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TraceError("no such file", source=name) from None
    except IsADirectoryError:
        raise TraceError("is a directory, not a trace file", source=name) from None
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", source=name) from None


def as_text(data: bytes) -> bytes:
    """UTF-8 bytes without a BOM; undecodable bytes become U+FFFD rather than failing.

    A real export with one stray Latin-1 byte in an account name should still import;
    rows whose numbers were garbled fail their own parse and are counted.
    """
    data = data.removeprefix(_BOM)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").encode("utf-8")
    return data


def split_header(data: bytes) -> tuple[str, bytes, int]:
    """The first non-empty line (decoded), the bytes after it, and its line number."""
    pos = 0
    line_no = 0
    for match in _NEWLINE.finditer(data):
        line_no += 1
        if data[pos : match.start()].strip():
            return (
                data[pos : match.start()].decode("utf-8", "replace"),
                data[match.end() :],
                line_no,
            )
        pos = match.end()
    line_no += 1
    if data[pos:].strip():
        return data[pos:].decode("utf-8", "replace"), b"", line_no
    return "", b"", line_no


def parse_header(line: str, delimiter: str, quoted: bool) -> list[str]:
    """Column names of a header line, stripped of surrounding spaces."""
    if not quoted:
        return [h.strip() for h in line.split(delimiter)]
    try:
        row = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        row = line.split(delimiter)
    return [h.strip() for h in row]


def read_delimited(
    data: bytes,
    name: str,
    *,
    delimiter: str,
    quoted: bool,
    wanted: Callable[[list[str]], Iterable[int]] | None = None,
) -> Source:
    """Parse ``data`` (a whole file) into a :class:`Source` of string columns.

    ``wanted`` picks the column positions to keep from the header (and raises
    :class:`TraceError` when one it needs is absent); by default all are kept.
    """
    data = as_text(data)
    head, body, header_line = split_header(data)
    if not head:
        raise TraceError("empty file: no header line", source=name)
    header = parse_header(head, delimiter, quoted)
    keep = sorted(set(range(len(header)) if wanted is None else wanted(header)))
    fast = _fast(body, header, keep, delimiter, quoted)
    if fast is not None:
        n = fast.num_rows
        # One conversion of the whole table: polars converts a lone Arrow array through a
        # helper that imports pyarrow.compute (tens of ms of a CLI start), a table not.
        frame = pl.from_arrow(fast.select([f"c{i}" for i in keep]))
        assert isinstance(frame, pl.DataFrame), "a pyarrow Table converts to a DataFrame"
        cols = {i: frame.get_column(f"c{i}").alias(str(i)) for i in keep}
        return Source(
            name,
            header,
            {i: s.cast(pl.String) for i, s in cols.items()},
            n,
            np.arange(n, dtype=np.int64),
            _body=body,
            _header_line=header_line,
        )
    return _slow(body, name, header, keep, delimiter, quoted, header_line)


def _fast(
    body: bytes, header: list[str], keep: list[int], delimiter: str, quoted: bool
) -> pa.Table | None:
    names = [f"c{i}" for i in range(len(header))]
    if not body.strip(b"\r\n"):
        return pa.table({f"c{i}": pa.array([], pa.string()) for i in keep})
    try:
        return pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(column_names=names, block_size=_BLOCK),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"' if quoted else False,
                newlines_in_values=False,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                include_columns=[f"c{i}" for i in keep],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, ValueError, OverflowError):
        return None


def _slow(
    body: bytes,
    name: str,
    header: list[str],
    keep: list[int],
    delimiter: str,
    quoted: bool,
    header_line: int,
) -> Source:
    text = body.decode("utf-8", "replace")
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
    )
    width = len(header)
    values: dict[int, list[str]] = {i: [] for i in keep}
    lines: list[int] = []
    ordinal: list[int] = []
    bad: list[int] = []
    seen = 0
    prev = 0
    while True:
        start = header_line + prev + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise TraceError(f"line {start}: {exc}", source=name) from None
        prev = reader.line_num
        if not row:
            continue
        if len(row) != width:
            bad.append(start)
            seen += 1
            continue
        for i in keep:
            values[i].append(row[i])
        lines.append(start)
        ordinal.append(seen)
        seen += 1
    cols = {i: pl.Series(str(i), v, dtype=pl.String) for i, v in values.items()}
    return Source(
        name,
        header,
        cols,
        len(lines),
        np.asarray(ordinal, dtype=np.int64),
        bad_lines=bad,
        _lines=np.asarray(lines, dtype=np.int64),
        _header_line=header_line,
    )


def _nonempty_lines(body: bytes, header_line: int) -> np.ndarray:
    """Line numbers of the non-empty lines of ``body`` (the rows the fast path saw)."""
    numbers = [header_line + k + 1 for k, line in enumerate(body.splitlines()) if line]
    return np.asarray(numbers, dtype=np.int64)


def find_column(header: list[str], name: str) -> int | None:
    """Position of column ``name``: an exact match, else the one case-insensitive match."""
    want = name.strip()
    for i, h in enumerate(header):
        if h == want:
            return i
    folded = [i for i, h in enumerate(header) if h.casefold() == want.casefold()]
    return folded[0] if len(folded) == 1 else None


def where_line(source: Source) -> Callable[[int], str]:
    """``line N`` for a data row, for error messages."""
    return lambda row: f"line {source.line_of(row)}"
