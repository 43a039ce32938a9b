"""Reading the input formats (csv, jsonl, parquet) with pyarrow, as the spec's reader options say.

Shared by the planner (cutting csv files at line ends, listing partition keys) and the
readers (decoding a mini-batch), so both read a file the same way.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from .storage import as_fsspec, filesystem


def has_header(spec_or_options) -> bool:
    options = spec_or_options if isinstance(spec_or_options, dict) else spec_or_options.input.options
    return bool(options.get("header", True)) and not options.get("columnNames")


def csv_options(options: dict, column_names: list[str] | None = None, column_types=None,
                newlines_in_values: bool = False):
    """pyarrow's csv options from `spec.input.options` (delimiter, header, columnNames,
    quoteChar, encoding, newlinesInValues, columns). `column_names` is for reading a
    byte range whose header line is elsewhere; without a header, columns are f0, f1...
    `column_types`: the plan's types (a pa.Schema); `newlines_in_values`: the bytes hold
    quotes, so pyarrow's blocks must not be cut inside one."""
    import pyarrow.csv as csv

    names = column_names or options.get("columnNames")
    read = csv.ReadOptions(column_names=names, autogenerate_column_names=not names and not has_header(options),
                           encoding=options.get("encoding", "utf8"), block_size=1 << 24)
    parse = csv.ParseOptions(delimiter=options.get("delimiter", ","), quote_char=options.get("quoteChar", '"'),
                             newlines_in_values=newlines_in_values or bool(options.get("newlinesInValues")))
    convert = csv.ConvertOptions(include_columns=options.get("columns"), column_types=column_types)
    return read, parse, convert


def raw_lines(options: dict) -> bool:
    """jsonl read as text (`input.options.raw`): each line one item, unparsed, in a column `line`,
    for JSON whose fields differ from line to line (request bodies)."""
    return options.get("raw") is True


RAW_COLUMN = "line"


def quote_of(options: dict) -> bytes | None:
    """The csv quote character as a byte; None where quoting is off (`quoteChar: false`)."""
    quote = options.get("quoteChar", '"')
    return quote.encode() if quote else None


# Extensions of compressed files that no installed codec may read, and what to install for each.
_CODEC_PACKAGES = {"zst": "zstandard", "lz4": "lz4", "snappy": "python-snappy", "br": None}


def compression_of(rel: str) -> str | None:
    """The compression a file's extension names (fsspec's names: gzip, bz2, xz, zstd, zip...), or None.
    Raises ValueError for a compressed file that no installed codec reads."""
    from fsspec.utils import compressions  # extension → codec, of the codecs installed

    extension = posixpath.splitext(rel)[1][1:].lower()
    found = compressions.get(extension)
    if found is None and extension in _CODEC_PACKAGES:
        package = _CODEC_PACKAGES[extension]
        fix = f"install {package} where the job plans and runs" if package else \
            "decompress it or recompress it as .gz, .bz2, .xz or .zst"
        raise ValueError(f"{rel} is compressed (.{extension}) and no installed codec reads it; {fix}")
    return found


def decompressed(f, compression: str):
    """A file object reading `f` decompressed."""
    from fsspec.compression import compr

    return compr[compression](f, mode="rb")


def arrow_dataset(root: str, rels: list[str], fmt: str, options: dict, env: Mapping[str, str] | None = None,
                  schema=None):
    """A pyarrow dataset over some files of the input: their own columns, or read with `schema`
    (the plan's, schemas.py), hive-style folder keys among its columns."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from .folder_keys import HIVE_NULL, hive_keys

    fs, base = filesystem(root, env)
    if fmt == "csv":
        read, parse, convert = csv_options(options)
        file_format = ds.CsvFileFormat(read_options=read, parse_options=parse, convert_options=convert)
    else:
        file_format = {"parquet": "parquet", "jsonl": "json"}[fmt]
    partitioning = None
    if schema is not None:
        names = dict.fromkeys(name for r in rels for name in hive_keys(r) if name in schema.names)
        if names:
            partitioning = ds.HivePartitioning(pa.schema([schema.field(n) for n in names]), null_fallback=HIVE_NULL)
    return ds.dataset([f"{base}/{r}" for r in rels], filesystem=as_fsspec(fs), format=file_format, schema=schema,
                      partitioning=partitioning, partition_base_dir=base)
