"""Where the rows of a csv or jsonl file end: at newlines outside quoted values.

A csv value in quotes may hold a newline (RFC 4180), so a newline ends a row only where
an even number of quote characters came before it. That holds while every quote opens a
value (at the start of a file, a line or a field, or right after the closing quote of an
escaped `""`) or closes one (before a delimiter, a line end, the end of the file or an
escaping quote), which is how pyarrow reads quotes. A file with a quote anywhere else
(`5" screen` unquoted) has no cut that is known to be safe: Unsafe is raised and the
planner keeps the file whole, for pyarrow to read in one piece.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK = 16 * 2**20  # bytes scanned at a time


class Unsafe(Exception):
    """A quote that neither opens nor closes a value: the file cannot be cut safely."""


def row_ends(f, start: int, quote: bytes | None, delimiter: bytes, jsonl: bool = False) -> Iterator[np.ndarray]:
    """Offsets just after each newline that ends a row, from `start` on, block by block
    (int64 arrays, ascending). A blank line is no row, as the readers skip it: csv's is a
    line end alone (`\\n`, `\\r\\n`), jsonl's (`jsonl`) one of only whitespace. `quote` None:
    no quoting (jsonl, or csv with quoteChar off). The end of a last line without a newline
    is not among them."""
    f.seek(start)
    pos, last, inside, before = start, start, False, b"\n"  # last: the end of the last line; before: the byte ahead
    closing_at_end = False  # the previous block ended on a closing quote: check what follows it
    text_after_last = False  # jsonl: a byte other than whitespace since the last line end
    while block := f.read(BLOCK):
        if closing_at_end and block[:1] not in (delimiter, b"\r", b"\n", quote):
            raise Unsafe(f"a quote at byte {pos - 1} is followed by {block[:1]!r}")
        data = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(data == 10)
        if quote is None or (not inside and block.count(quote) == 0):
            ends, closing_at_end = newlines, False
        else:
            ends, inside, closing_at_end = _outside_quotes(data, newlines, inside, before, quote, delimiter, pos)
        previous = np.concatenate(([last - pos - 1], ends[:-1]))  # the line end before each, in the block's offsets
        if jsonl:
            text = np.flatnonzero(~np.isin(data, _WHITESPACE))
            rows = ends[(np.searchsorted(text, ends) > np.searchsorted(text, np.maximum(previous + 1, 0)))
                        | (previous < 0) & text_after_last]
            text_after_last = (bool(len(text)) and text[-1] > (ends[-1] if len(ends) else -1)) or \
                (text_after_last and not len(ends))
        else:
            lengths = ends - previous
            carriage = (ends >= 1) & (data[np.maximum(ends - 1, 0)] == 13) | (ends == 0) & (before == b"\r")
            rows = ends[(lengths > 2) | (lengths == 2) & ~carriage]
        if len(ends):
            last = int(ends[-1]) + pos + 1
        yield rows + (pos + 1)
        pos += len(block)
        before = block[-1:]
    if inside:
        raise Unsafe("a quoted value is not closed by the end of the file")


_WHITESPACE = np.frombuffer(b" \t\r\n", dtype=np.uint8)


def cuts(f, start: int, size: int, target: int, quote: bytes, delimiter: bytes) -> Iterator[int]:
    """Where to cut `target` bytes at a time: just after the first row-ending newline at or
    past each `target` bytes from the last cut. Reads up to the last cut; a block without a
    quote is searched by bytes.find, not numpy (planning a large quote-free file by size)."""
    f.seek(start)
    pos, goal, inside, before, closing_at_end = start, start + target, False, b"\n", False
    while goal < size and (block := f.read(BLOCK)):
        if closing_at_end and block[:1] not in (delimiter, b"\r", b"\n", quote):
            raise Unsafe(f"a quote at byte {pos - 1} is followed by {block[:1]!r}")
        if not inside and block.count(quote) == 0:
            closing_at_end = False
            while goal < size and (i := block.find(b"\n", max(goal - pos, 0))) >= 0:
                yield pos + i + 1
                goal = pos + i + 1 + target
        else:
            data = np.frombuffer(block, dtype=np.uint8)
            ends, inside, closing_at_end = _outside_quotes(data, np.flatnonzero(data == 10), inside, before, quote,
                                                           delimiter, pos)
            ends += pos + 1
            while goal < size and (i := int(np.searchsorted(ends, goal, side="right"))) < len(ends):
                yield int(ends[i])
                goal = int(ends[i]) + target
        pos += len(block)
        before = block[-1:]


def _outside_quotes(data: np.ndarray, newlines: np.ndarray, inside: bool, before: bytes, quote: bytes,
                    delimiter: bytes, pos: int) -> tuple[np.ndarray, bool, bool]:
    """The newlines of a block that lie outside quoted values, whether the block ends inside
    one, and whether it ends on a closing quote; Unsafe for a quote that neither opens nor closes."""
    quotes = np.flatnonzero(data == quote[0])
    first = 1 if inside else 0  # index of the block's first opening quote
    openings, closings = quotes[first::2], quotes[1 - first::2]
    allowed = np.frombuffer(delimiter + b"\r\n" + quote, dtype=np.uint8)
    previous = np.where(openings > 0, data[np.maximum(openings - 1, 0)], before[0])
    bad = openings[~np.isin(previous, allowed)]
    if len(bad):
        raise Unsafe(f"a quote at byte {pos + int(bad[0])} does not start a value")
    within = closings[closings + 1 < len(data)]
    bad = within[~np.isin(data[within + 1], allowed)]
    if len(bad):
        raise Unsafe(f"a quote at byte {pos + int(bad[0])} does not end a value")
    odd = (np.searchsorted(quotes, newlines) + first) % 2 == 1  # inside a value at the newline
    closing_at_end = len(closings) > 0 and closings[-1] == len(data) - 1
    return newlines[~odd], (len(quotes) + first) % 2 == 1, closing_at_end


def has_last_row(tail: bytes, jsonl: bool = False) -> bool:
    """Whether the bytes after a file's last row end (blank lines, then maybe a row without
    a newline) hold a row; `jsonl` as row_ends'."""
    line = tail.rsplit(b"\n", 1)[-1]
    return (line.strip() if jsonl else line.strip(b"\r")) != b""


def count(data: bytes, quote: bytes | None, delimiter: bytes, jsonl: bool = False) -> int:
    """The rows of `data`, which starts where a row does; Unsafe as row_ends."""
    import io

    ends = [block for block in row_ends(io.BytesIO(data), 0, quote, delimiter, jsonl) if len(block)]
    last = int(ends[-1][-1]) if ends else 0
    return sum(map(len, ends)) + has_last_row(data[last:], jsonl)
