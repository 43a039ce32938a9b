"""Parquet files joined into one by copying their row groups as bytes: nothing decoded or encoded.
Also the row counts of a file's row groups and the kind of its schema from its footer alone, for
the planner (no pyarrow).

A Parquet file is `PAR1`, its column chunks (and page indexes), a Thrift footer
(FileMetaData), the footer's length and `PAR1`. Files of one schema are joined by
copying each file's body behind the previous ones and writing one footer that lists
every row group, with its byte offsets moved by where its body now lies. The footer
is read and written with the Thrift compact protocol (below), field by field, so
fields this module does not know are kept as they are.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO, NamedTuple, cast

MAGIC = b"PAR1"

# Thrift compact types
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)

# Field ids of parquet.thrift used here.
_FILE_SCHEMA, _FILE_NUM_ROWS, _FILE_ROW_GROUPS, _FILE_KEY_VALUES, _FILE_ENCRYPTION, _FILE_SIGNING_KEY = 2, 3, 4, 5, 8, 9
_RG_COLUMNS, _RG_NUM_ROWS, _RG_FILE_OFFSET, _RG_ORDINAL = 1, 3, 5, 7
_TAIL = 64 * 2**10  # bytes read from a file's end at first: its footer, mostly
_CC_FILE_PATH, _CC_META, _CC_CRYPTO, _CC_ENCRYPTED_META = 1, 3, 8, 9
_CC_FILE_OFFSET = 2
_CC_PAGE_INDEX = (4, 6)  # offset_index_offset, column_index_offset: their page locations are absolute
_META_OFFSETS = (9, 10, 11, 14)  # data_page, index_page, dictionary_page, bloom_filter offsets


class NotJoinable(ValueError):
    """The files cannot be joined by copying: another schema, encryption, an external column chunk."""


class Field(NamedTuple):
    id: int
    type: int
    value: object  # int, float, bytes, bool, a struct (list of Field), or (element type, [values])


# -- Thrift compact protocol -------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int):
        if kind in (_TRUE, _FALSE):  # a bool inside a list or map: one byte
            return self.byte()
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            self.pos += 8
            return struct.unpack_from("<d", self.data, self.pos - 8)[0]
        if kind == _BINARY:
            n = self.varint()
            self.pos += n
            return self.data[self.pos - n:self.pos]
        if kind in (_LIST, _SET):
            head = self.byte()
            size, element = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return element, [self.value(element) for _ in range(size)]
        if kind == _MAP:
            size = self.varint()
            types = self.byte() if size else 0
            return types, [(self.value(types >> 4), self.value(types & 0x0F)) for _ in range(size)]
        if kind == _STRUCT:
            return self.struct()
        raise NotJoinable(f"unknown Thrift type {kind} in a Parquet footer")

    def struct(self) -> list[Field]:
        fields: list[Field] = []
        last = 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == _STOP:
                return fields
            delta = head >> 4
            last = last + delta if delta else self.zigzag()
            fields.append(Field(last, kind, None if kind in (_TRUE, _FALSE) else self.value(kind)))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _value(kind: int, value) -> bytes:
    if kind in (_TRUE, _FALSE, _BYTE):
        return bytes([value])
    if kind in (_I16, _I32, _I64):
        return _zigzag(value)
    if kind == _DOUBLE:
        return struct.pack("<d", value)
    if kind == _BINARY:
        return _varint(len(value)) + value
    if kind in (_LIST, _SET):
        element, items = value
        head = bytes([len(items) << 4 | element]) if len(items) < 15 else bytes([0xF0 | element]) + _varint(len(items))
        return head + b"".join(_value(element, v) for v in items)
    if kind == _MAP:
        types, items = value
        return _varint(len(items)) + (bytes([types]) if items else b"") + b"".join(
            _value(types >> 4, k) + _value(types & 0x0F, v) for k, v in items)
    return _struct(value)


def _struct(fields: list[Field]) -> bytes:
    out, last = bytearray(), 0
    for f in fields:
        delta = f.id - last
        out += bytes([delta << 4 | f.type]) if 0 < delta <= 15 else bytes([f.type]) + _zigzag(f.id)
        if f.type not in (_TRUE, _FALSE):
            out += _value(f.type, f.value)
        last = f.id
    out.append(_STOP)
    return bytes(out)


# -- joining -----------------------------------------------------------------------------


def read_file(f, start: int = 0, end: int | None = None) -> tuple[list[Field], int]:
    """The FileMetaData of the Parquet file f[start:end] (as read_footer) and the size of its
    body, the bytes between its leading PAR1 and its footer; both PAR1 checked."""
    end = f.seek(0, 2) if end is None else end
    meta, length = read_footer(f, start, end)
    f.seek(start)
    if f.read(len(MAGIC)) != MAGIC:
        raise NotJoinable("not a Parquet file")
    return meta, end - start - len(MAGIC) - length - 8


def read_footer(f, start: int = 0, end: int | None = None) -> tuple[list[Field], int]:
    """The FileMetaData of the Parquet file open as `f` (seekable, binary; the file is bytes
    start..end of it, by default all of it) and its length in bytes, from the file's tail:
    one read for a footer of up to 64 KiB, two for a longer one."""
    end = f.seek(0, 2) if end is None else end
    if end - start < 12:
        raise NotJoinable("not a Parquet file")
    f.seek(max(start, end - _TAIL))
    tail = f.read(end - f.tell())
    length = struct.unpack_from("<I", tail, len(tail) - 8)[0]
    if tail[-4:] != MAGIC:
        raise NotJoinable("not a Parquet file")
    if length > end - start - 12:
        raise NotJoinable("not a Parquet file: its footer is longer than the file")
    if length + 8 > len(tail):
        f.seek(end - 8 - length)
        tail = f.read(length + 8)
    return _Reader(tail[len(tail) - 8 - length:len(tail) - 8]).struct(), length


def row_group_rows(meta: list[Field]) -> list[int]:
    """The number of rows of each row group, from a FileMetaData (read_file, read_footer)."""
    groups = _get(meta, _FILE_ROW_GROUPS)
    return [_get(g, _RG_NUM_ROWS) for g in groups[1]] if groups is not None else []


def schema_kind(meta: list[Field]) -> bytes:
    """What tells a FileMetaData's columns apart: the Arrow schema its writer kept (key
    `ARROW:schema`: dictionaries, time zones, large strings), else its Parquet schema as bytes."""
    pairs = _get(meta, _FILE_KEY_VALUES)
    arrow = next((_get(kv, 2) for kv in pairs[1] if _get(kv, 1) == b"ARROW:schema"), None) if pairs else None
    return b"A" + arrow if arrow is not None else b"P" + _value(_LIST, _get(meta, _FILE_SCHEMA))


def _get(fields: list[Field], field_id: int):
    return next((f.value for f in fields if f.id == field_id), None)


def _shifted(fields: list[Field], ids: tuple[int, ...], delta: int) -> list[Field]:
    """The fields with `ids`, each an integer (an offset), moved by `delta`."""
    return [f._replace(value=cast(int, f.value) + delta) if f.id in ids else f for f in fields]


def _moved_row_group(row_group: list[Field], delta: int, ordinal: int) -> list[Field]:
    moved = []
    for f in row_group:
        if f.id == _RG_COLUMNS:
            element, chunks = cast(tuple[int, list[list[Field]]], f.value)  # a list of ColumnChunk structs
            f = f._replace(value=(element, [_moved_chunk(c, delta) for c in chunks]))
        elif f.id == _RG_FILE_OFFSET:
            f = f._replace(value=cast(int, f.value) + delta)
        elif f.id == _RG_ORDINAL:
            if ordinal > 32767:  # an i16: a file of more row groups leaves it out
                continue
            f = f._replace(value=ordinal)
        moved.append(f)
    return moved


def _moved_chunk(chunk: list[Field], delta: int) -> list[Field]:
    if any(f.id in (_CC_FILE_PATH, _CC_CRYPTO, _CC_ENCRYPTED_META) for f in chunk):
        raise NotJoinable("a column chunk is in another file or encrypted")
    if any(f.id in _CC_PAGE_INDEX for f in chunk):  # the page locations inside the index would need moving too
        raise NotJoinable("a column chunk has a page index")
    chunk = _shifted(chunk, (_CC_FILE_OFFSET,), delta)
    return [f._replace(value=_shifted(cast(list[Field], f.value), _META_OFFSETS, delta)) if f.id == _CC_META else f
            for f in chunk]  # ColumnMetaData: a struct


class Joiner:
    """Writes Parquet files, given one after the other as bytes, into `out` as one file.

    Every file must have the first one's schema (else NotJoinable, before anything of
    that file is written); the first file's key-value metadata (the Arrow schema)
    and writer name are kept. `close()` writes the footer."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.head: list[Field] | None = None
        self.schema: bytes | None = None
        self.row_groups: list[list[Field]] = []
        self.rows = 0
        self.position = 0

    def add(self, data: bytes) -> None:
        meta, body = read_file(io.BytesIO(data))
        self.add_body(meta, body, lambda out: out.write(memoryview(data)[len(MAGIC):len(MAGIC) + body]))

    def add_body(self, meta: list[Field], size: int, write_body) -> None:
        """A file given by its FileMetaData and the size of its body (its bytes between its
        leading PAR1 and its footer); `write_body(out)` writes that body onto `out`."""
        schema = _value(_LIST, _get(meta, _FILE_SCHEMA))
        if _get(meta, _FILE_ENCRYPTION) is not None or _get(meta, _FILE_SIGNING_KEY) is not None:
            raise NotJoinable("an encrypted Parquet file")
        if self.head is not None and schema != self.schema:
            raise NotJoinable("another Parquet schema")
        delta = self.position - len(MAGIC) if self.head is not None else 0
        groups = [_moved_row_group(g, delta, len(self.row_groups) + i)
                  for i, g in enumerate(_get(meta, _FILE_ROW_GROUPS)[1])]
        if self.head is None:
            self.head, self.schema = meta, schema
            self.out.write(MAGIC)
            self.position = len(MAGIC)
        write_body(self.out)
        self.position += size
        self.row_groups.extend(groups)
        self.rows += _get(meta, _FILE_NUM_ROWS)

    def close(self) -> None:
        if self.head is None:
            raise NotJoinable("no file to join")
        meta = []
        for f in self.head:
            if f.id == _FILE_NUM_ROWS:
                f = f._replace(value=self.rows)
            elif f.id == _FILE_ROW_GROUPS:
                f = f._replace(value=(_STRUCT, self.row_groups))
            meta.append(f)
        encoded = _struct(meta)
        self.out.write(encoded + struct.pack("<I", len(encoded)) + MAGIC)
