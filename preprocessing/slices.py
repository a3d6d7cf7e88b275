"""Annotation slices: a big CSV cut into byte ranges of whole rows, planned without parsing it.

The shard driver never holds the corpus's records: it streams the CSV once, counting rows (a
row ends at a newline outside quotes; quoted fields may hold newlines and ``""``), and yields
one :class:`CsvSlice` per ``rows`` rows. A worker reads, stats and hashes only its slice's
records (docs/data.md, "Shards at scale"). Memory in the driver is one line at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from preprocessing.mixing import MixedSlice, block_rows, mixed_records, plan_mixed
from preprocessing.records import VideoRecord
from preprocessing.remote import location, open_binary
from preprocessing.wds_input import TarSlice, TarSource, plan_tar_slices, tar_slice_records
from t2v2t.storage import Location, is_url


@dataclass(frozen=True)
class CsvSlice:
    """Rows ``[start, stop)`` (bytes) of ``path``: ``rows`` non-blank rows from line ``first_line``."""

    path: str
    start: int
    stop: int
    first_line: int
    rows: int


# An adapter's reader of one byte range: (data root, CSV, (start, stop, first line)) -> records.
# A module-level function, so that a source pickles to the Dask workers by name.
SliceReader = Callable[[Location, Location, tuple[int, int, int]], list[VideoRecord]]


@dataclass(frozen=True)
class CsvSource:
    """An annotation CSV under the data ``root``, read in slices by its adapter's ``reader``
    (``preprocessing/adapters.py`` passes it; this module knows no dataset)."""

    reader: SliceReader
    root: str
    path: str


def plan_slices(path: str | Path, rows: int) -> Iterator[CsvSlice]:
    """Byte ranges of ``rows`` rows each (the last may hold fewer), after the header line."""
    if rows < 1:
        raise ValueError(f"rows per slice must be >= 1, got {rows}")
    with open_binary(location(path)) as f:  # a local file or a URL (preprocessing/remote.py)
        offset, line, quotes = 0, 0, 0
        start, first, count = -1, 0, 0
        header_done = False
        for raw in f:
            line += 1
            quotes += raw.count(b'"')
            offset += len(raw)
            if quotes % 2:  # inside a quoted field: the row goes on
                continue
            quotes = 0
            if not header_done:
                header_done = True
                start, first = offset, line + 1
                continue
            if raw.strip():  # blank lines are no rows (the csv reader skips them too)
                count += 1
            if count == rows:
                yield CsvSlice(str(path), start, offset, first, count)
                start, first, count = offset, line + 1, 0
        if count:
            yield CsvSlice(str(path), start, offset, first, count)


# Inputs that workers read slice by slice: a CSV, or webdataset tars (preprocessing/wds_input.py).
SlicedSource = CsvSource | TarSource
Slice = CsvSlice | TarSlice | MixedSlice


def absolute(source: SlicedSource) -> SlicedSource:
    """The source with absolute paths (a Dask worker may start in any folder)."""
    if isinstance(source, TarSource):
        return replace(
            source, root=os.path.abspath(source.root), folder=os.path.abspath(source.folder)
        )
    return replace(source, root=_absolute(source.root), path=_absolute(source.path))


def _absolute(path: str) -> str:
    return path if is_url(path) else os.path.abspath(path)  # a URL is absolute already


def plan_parts(
    source: SlicedSource, rows: int, mixing: str = "none", seed: int = 0
) -> Iterator[Slice]:
    """The source's slices of ``rows`` inputs each, planned as they are consumed.

    ``mixing="blocks"``: each slice gathers its rows from the whole source
    (:mod:`preprocessing.mixing`); the source is cut into small blocks before the first slice.
    """
    if mixing == "blocks":
        return plan_mixed(_blocks(source, block_rows(rows)), rows, seed)
    if isinstance(source, TarSource):
        return plan_tar_slices(source, rows)
    return plan_slices(source.path, rows)


def _blocks(source: SlicedSource, rows: int) -> Iterator[tuple[str, int, int, int, int]]:
    """The source's slices of ``rows`` inputs as plain tuples (the mixing table's rows)."""
    if isinstance(source, TarSource):
        return ((p.path, p.start, p.stop, p.first, p.rows) for p in plan_tar_slices(source, rows))
    return ((p.path, p.start, p.stop, p.first_line, p.rows) for p in plan_slices(source.path, rows))


def slice_records(source: SlicedSource, part: Slice) -> list[VideoRecord]:
    """The records of one slice, by the source's adapter (runs in a worker)."""
    if isinstance(source, TarSource) and isinstance(part, TarSlice):
        return tar_slice_records(source, part)
    if isinstance(part, MixedSlice):  # each block as the slice of its source it is
        block = TarSlice if isinstance(source, TarSource) else CsvSlice
        return mixed_records(lambda b: slice_records(source, block(*b)), part)
    if not isinstance(source, CsvSource) or not isinstance(part, CsvSlice):
        raise ValueError(f"no sliced reader for a {type(part).__name__} of {source}")
    return source.reader(
        location(source.root), location(part.path), (part.start, part.stop, part.first_line)
    )
