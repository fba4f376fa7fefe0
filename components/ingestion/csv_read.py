"""Reading a CSV file into columns: the fast chunked reader (pandas' C parser) and the line reader.

`read_fast` takes a clean file (checked first by a streaming byte scan, `_scan`) through pandas'
C parser CHUNK_ROWS lines at a time; anything irregular returns None and `read_lines` reads it
line by line, naming each bad `file:line`. Both give the same columns: each used column's raw
strings (text columns), missing masks, numbers (targets and features), the parsed time column
(`read_times`) and the text of each unreadable time. `load_csv` (csv_source.py) turns them into
series.
"""

from __future__ import annotations

import codecs
import csv
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.config import DataConfig

from . import timeseries
from .readers import DataSourceError, Rows


def read_lines(rows: Rows, lines: Any, header: list[str], used: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Line by line: each well-formed line's used fields (stripped strings) and its line number; the
    others are recorded as bad rows."""
    pick = operator.itemgetter(*(header.index(name) for name in used), 0)  # always a tuple
    parsed: list[tuple[str, ...]] = []
    numbers_list: list[int] = []
    for number, text in lines:
        try:
            fields = next(csv.reader([text]))
        except csv.Error as exc:
            rows.skip(number, f"bad CSV line ({exc})")
            continue
        if len(fields) != len(header):
            rows.skip(number, f"expected {len(header)} fields, found {len(fields)}")
            continue
        parsed.append(pick(fields))
        numbers_list.append(number)
    if not parsed:
        raise DataSourceError(f"data file '{rows.path}' has a header but no usable rows.")
    raw = {name: np.array([v.strip() for v in column], dtype=object) for name, column in zip(used, zip(*parsed))}
    return np.array(numbers_list, dtype="int64"), raw


NA_TOKENS = sorted({v for m in timeseries.MISSING if m for v in (m, m.upper(), m.title(), m.capitalize())})


def first_line(path: Path) -> str | None:
    """Line 1 of the file as text, when it is there, not blank and UTF-8 (BOM removed); else None."""
    try:
        with open(path, "rb") as handle:
            line = handle.readline(1 << 20)
            if not line.endswith(b"\n") and handle.read(1):
                return None  # a header over 1 MiB: the line reader takes it
            line = line.removeprefix(codecs.BOM_UTF8).rstrip(b"\r\n")
        return line.decode("utf-8") if line.strip() and b"\x00" not in line else None
    except (OSError, UnicodeDecodeError):
        return None


# Bytes of what str.strip removes besides the space: tab, other ASCII controls, and (UTF-8) NEL, NBSP and the
# Unicode spaces; a file holding any of them has its text fields stripped (b"\xe2\x80" also matches dashes and
# quotes: a needless strip, never a missed one).
OTHER_BLANKS = re.compile(rb"[\t\x0b\x0c\x1c-\x1f]|\xc2[\x85\xa0]|\xe1\x9a\x80|\xe2\x80|\xe2\x81\x9f|\xe3\x80\x80")
ASCII_BLANKS = (b"\t", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")  # the same, in ASCII text (memchr-fast)


@dataclass
class Scan:
    """What one pass over a file's bytes found: its lines, whether some line does not hold the header's
    number of commas, quotes, blanks next to a separator."""

    lines: int = 0
    uneven: bool = False
    quotes: bool = False
    padded: bool = False


def _scan(path: Path, fields: int, block: int = 1 << 22) -> Scan | None:
    """Count lines and check each line's commas (`fields` - 1) block by block (memory: a few blocks); None
    when it is not plain UTF-8 text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    scan, previous, size, carry = Scan(), b"\n", 0, 0  # carry: commas of the line the last block left open
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            if not size:
                chunk = chunk.removeprefix(codecs.BOM_UTF8)
            size += len(chunk)
            if not chunk:
                continue
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return None
            if b"\x00" in chunk:
                return None
            edge = previous + chunk[:1]  # a blank next to a separator across the block boundary
            data = np.frombuffer(chunk, dtype=np.uint8)
            comma, newline = data == ord(","), data == ord("\n")
            commas = np.cumsum(comma, dtype=np.int64)
            ends = np.flatnonzero(newline)
            at = commas[ends]
            per_line = np.diff(at, prepend=0)
            if len(ends):
                per_line[0] += carry
                carry = 0
            scan.uneven |= bool((per_line != fields - 1).any())
            carry += int(commas[-1] - (at[-1] if len(ends) else 0))
            scan.lines += len(ends)
            scan.quotes |= b'"' in chunk
            if not scan.padded:  # a blank next to a separator, or any other blank: text fields get stripped
                space = data == ord(" ")
                if space.any():
                    sep = comma | newline | (data == ord("\r"))
                    scan.padded = bool((space[:-1] & sep[1:]).any() or (sep[:-1] & space[1:]).any())
                scan.padded |= edge in (b" ,", b", ", b" \n", b"\n ", b" \r") or (
                    any(b in chunk for b in ASCII_BLANKS) if chunk.isascii() else bool(OTHER_BLANKS.search(chunk)))
            previous = chunk[-1:]
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    if previous != b"\n":  # a last line without its newline
        scan.lines += 1
        scan.uneven |= carry != fields - 1
    scan.padded |= previous == b" "
    return scan


def read_times(raw: dict[str, np.ndarray], absent: dict[str, np.ndarray], data: DataConfig, path: Path,
                numeric: list[str], rule: timeseries.TimeRule | None = None) -> tuple[Any, ...]:
    """The time column of some rows parsed by `rule` (default: decided from these rows): (Times or None,
    the text of each unreadable time by row index, the rule, its vote: [present values read as numbers,
    present values]). Its strings leave `raw` unless the column is also the id or a feature."""
    name = data.time_column
    if not name:
        return None, {}, None, [0, 0]
    text = raw[name]
    try:
        rule = rule or timeseries.time_rule(text, data.time_format, absent[name])
        times = timeseries.parse_times(text, data.time_format, absent[name], rule)
    except ValueError as exc:  # only a bad data.time_format gets here (values are coerced)
        raise DataSourceError(f"data.time_format={data.time_format!r} cannot read column "
                              f"{name!r} of '{path}': {exc}") from None
    unreadable = {int(i): text[i] for i in np.flatnonzero(~times.ok)}
    vote = [0 if data.time_format else timeseries.numbers_among(text, absent[name], times, rule),
            int((~absent[name]).sum())]
    if name != data.id_column and name not in numeric:
        del raw[name]  # parsed: its strings (most of a long file's memory) are no longer needed
    return times, unreadable, rule, vote


CHUNK_ROWS = 1 << 20  # the fast reader's rows per chunk: one chunk's strings are parsed and freed at a time


def read_fast(rows: Rows, header: list[str], used: list[str], numeric: list[str],
               data: DataConfig) -> tuple[Any, ...] | None:
    """The whole file through pandas' C parser when every line is a well-formed row; None otherwise (the
    line-by-line reader then names each bad line).

    Taken only when: the file is UTF-8 text, there are >= 2 columns, every line (the header too)
    holds exactly len(header) - 1 commas (no blank or short lines, no quoted commas or newlines),
    and no numeric column holds an infinity. A column the C parser cannot read as numbers (a text
    target, a number column with a stray word) is read as strings, as the line reader would.
    The file is read from disk by the parser CHUNK_ROWS lines at a time, never held whole as text;
    each chunk's time strings are parsed (by the TimeRule of the first chunk) and freed before the
    next chunk is read. A text column read as numbers in some chunk, a time column whose first chunk
    has no time or whose whole column votes otherwise, an infinity or a boolean take the line reader.
    """
    import pandas as pd

    scan = _scan(rows.path, len(header))
    if scan is None or len(header) < 2 or scan.uneven or scan.quotes:
        return None
    strings = {c: str for c in (data.time_column, data.id_column) if c}  # as written: "007", "NA" reported as is
    tokens = {c: ["", *NA_TOKENS] for c in used if c not in strings}  # a blank cell is missing, as in a line
    chunks: list[tuple[dict[str, np.ndarray], ...]] = []
    time_parts, unreadable, rule, n, votes = [], {}, None, 0, [0, 0]
    try:
        reader = pd.read_csv(rows.path, usecols=used, engine="c", na_values=tokens, keep_default_na=False,
                             skip_blank_lines=False, dtype=strings, float_precision="round_trip", low_memory=True,
                             encoding="utf-8-sig", chunksize=CHUNK_ROWS)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    with reader:
        while True:
            try:
                frame = next(reader, None)
            except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
                return None
            if frame is None:
                break
            chunk = _chunk_columns(frame, used, strings, numeric, scan.padded)
            del frame
            if chunk is None:
                return None  # an infinity in a numeric column
            if data.time_column:
                if rule is None and chunk[1][data.time_column].all():
                    return None  # no time in the first chunk to decide how times are read
                times, bad, rule, vote = read_times(chunk[0], chunk[1], data, rows.path, numeric, rule)
                votes = [a + b for a, b in zip(votes, vote)]
                time_parts.append(times)
                unreadable.update({n + i: text for i, text in bad.items()})
            chunks.append(chunk)
            n += len(chunk[1][used[0]])
    if n != scan.lines - 1 or not n:
        return None
    if rule is not None and not data.time_format and (votes[0] * 2 >= max(votes[1], 1)) == rule.datetime:
        return None  # the whole column votes otherwise than its first chunk (numbers vs datetimes)
    absent, parsed = ({name: np.concatenate([c[k][name] for c in chunks]) for name in chunks[0][k]}
                      for k in (1, 2))
    raw = {}
    for name in {name for c in chunks for name in c[0]}:  # text columns, or numbers with a word in some chunk
        if any(name not in c[0] for c in chunks):
            if name not in parsed or not numeric_vote(absent[name], parsed[name]):
                return None  # a text column with a chunk of numbers only: the line reader keeps them as text
            # a number column with a word in some chunk: its text is kept where it was read as text (what
            # the message about a non-numeric value shows), None where the parser read numbers
        raw[name] = np.concatenate([c[0][name] if name in c[0] else np.full(len(c[1][name]), None, dtype=object)
                                    for c in chunks])
    rows.total = n
    times = timeseries.Times.concat(time_parts) if time_parts else None
    return np.arange(2, n + 2, dtype="int64"), raw, absent, parsed, times, unreadable


def numeric_vote(absent: np.ndarray, numbers: np.ndarray) -> bool:
    """A column is numeric when it has values and at least half of them read as finite numbers."""
    present = int((~absent).sum())
    return bool(present) and int(np.isfinite(numbers).sum()) * 2 >= present


def _chunk_columns(frame: Any, used: list[str], strings: dict[str, Any], numeric: list[str],
                   padded: bool) -> tuple[dict[str, np.ndarray], ...] | None:
    """One chunk of the C parser's frame -> (raw strings of the text columns, missing masks, numbers of
    the numeric columns); None when a numeric column holds an infinity or a column was read as booleans."""
    raw, absent, parsed = {}, {}, {}
    for name in used:
        col = frame.pop(name)
        if col.dtype.kind == "b":
            return None  # true/false read as booleans ("True"): the line reader keeps the text as written
        if col.dtype.kind in "fiu" and name not in strings:  # numbers (NaN: a missing-value token)
            values = col.to_numpy(dtype="float64")
            if np.isinf(values).any():
                return None
            absent[name], parsed[name] = np.isnan(values), values
            continue
        values = col.astype(object).where(col.notna(), "").astype(str)
        del col
        values = (values.str.strip() if padded else values).to_numpy(dtype=object)  # no blank by a comma: as is
        raw[name], absent[name] = values, timeseries.missing(values)
        if name in numeric:  # a target or feature column (a time or id column can be a feature too)
            parsed[name] = to_numbers(values, absent[name])
    return raw, absent, parsed


def to_numbers(values: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """Each present value as a float (NaN where missing or not a finite number)."""
    import pandas as pd

    out = pd.to_numeric(pd.Series(np.where(absent, None, values), dtype=object), errors="coerce")
    out = out.to_numpy(dtype="float64", na_value=np.nan)
    ok = np.isfinite(out)
    try:  # what to_numeric accepts, correctly rounded (as Python's float; to_numeric can be an ulp off)
        out[ok] = values[ok].astype("float64")
    except (ValueError, TypeError):  # a form float() refuses: to_numeric's reading stands
        pass
    return np.where(ok, out, np.nan)
