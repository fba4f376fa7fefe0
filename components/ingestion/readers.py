"""Shared readers of user files: the whole-file error, the line reader that records bad rows, tokens.

Here live `DataSourceError` (a file or dataset unusable as a whole; the CLI prints it as one
paragraph), `Rows` (the lines of one file, each malformed one recorded as `file:line: reason`),
`read_bytes` (a file's bytes, refused when missing, empty or not UTF-8 text) and the token
helpers shared by the sources and the ingestion stage (`tokens`, `target_tokenize`).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from components.config import DataConfig


class DataSourceError(RuntimeError):
    """A data file or dataset cannot be used as a whole (missing, empty, not UTF-8, wrong columns)."""


@dataclass
class Rows:
    """Lines of one user file, with the malformed ones recorded as `file:line: reason`."""

    path: Path
    bad: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def skip(self, line: int, reason: str) -> None:
        self.bad.append({"where": f"{self.path.name}:{line}", "reason": reason})

    def lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of every non-blank line; undecodable lines are recorded and skipped."""
        for number, raw in enumerate(read_bytes(self.path).split(b"\n"), start=1):
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue
            self.total += 1
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.skip(number, f"not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})")


def read_bytes(path: Path) -> bytes:
    """The file's bytes (BOM removed); a clear error if it is missing, empty or not UTF-8 text."""
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(f"data file '{path}' does not exist (or is not a file).")
    raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if not raw.strip():
        raise DataSourceError(f"data file '{path}' is empty: there is nothing to train on.")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw[:4096]:
        raise DataSourceError(
            f"data file '{path}' is not UTF-8 text (it looks like UTF-16 or a binary file); "
            f"re-save it as UTF-8.")
    sample = raw[:65536]
    bad_lines = sum(_undecodable(line) for line in sample.split(b"\n")[:-1] or [sample])
    if bad_lines > max(3, len(sample.split(b"\n")) // 2):
        raise DataSourceError(
            f"data file '{path}' is not UTF-8 text (most lines do not decode; Latin-1 or another "
            f"legacy encoding?); re-save it as UTF-8.")
    return raw


def _undecodable(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def target_tokenize(data: DataConfig) -> str:
    return data.target_tokenize or data.tokenize

