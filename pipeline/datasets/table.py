"""``table`` adapter: a dataset published as a metadata table of (video, time range, speaker, ...) rows.

Curated talking-face sets (TalkVid, CelebV-HQ, the HDTF and VFHQ annotations) are distributed as
tables that point at time ranges inside long source videos. One params entry ingests such a set::

    datasets:
      talkvid:
        adapter: table
        raw_dir: /data/talkvid/videos
        table: /data/talkvid/meta.parquet        # .parquet, .csv or .jsonl; relative paths: to raw_dir
        path_format: "{}.mp4"                      # the file of a row: the path column's value put into this
        columns: {path: video_id, start: start_time, end: end_time, speaker: channel_id}
        global_speaker: true                       # the speaker ids name one person across datasets

Each row is one ``SourceVideo``: ``path`` (raw_dir / ``path_format`` of the path column; an absolute
path is taken as is, and like any source outside raw_dir is held to ``follow_outside_symlinks``), ``range`` = (start, end) seconds (``time_unit`` s or ms; ``MM:SS`` / ``HH:MM:SS.f``
strings too) when the table has a time range, so ingest seeks to the range and decodes only it (no
range columns, or both empty: the whole file), and ``meta``: the speaker (``meta["speaker"]``),
``row`` (the row number) and every other column (``keep_columns`` limits them), values made
JSON-safe (NaN -> null, dates -> ISO strings). A row whose file is missing is still listed, so
ingest rejects it as ``missing_file``; a row with only one of start/end, or end <= start, becomes a
``bad_range`` reject. An exact repeat of a row's (file, range) is left out with a logged warning.

``global_speaker: true`` marks the ids as global (``meta["speaker_scope"] = "global"``): ``select``
then keeps a speaker in one split across every dataset that names them (DESIGN 2, identity-disjoint
splits); otherwise the ids are scoped to this dataset, like every other adapter's.
"""

from __future__ import annotations

import datetime
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from pipeline.datasets import DatasetError, SourceVideo

log = logging.getLogger(__name__)

SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class Columns:
    """``columns``: which table column holds what (``start``/``end``/``speaker`` optional)."""

    path: str = "path"
    start: Optional[str] = None
    end: Optional[str] = None
    speaker: Optional[str] = None


@dataclass(frozen=True)
class Options:
    table: str  # the metadata table (.parquet, .csv, .jsonl); a relative path is relative to raw_dir
    columns: Columns = field(default_factory=Columns)
    path_format: str = "{}"  # the file of a row: e.g. "videos/{}.mp4" for a video-id column
    time_unit: Literal["s", "ms"] = "s"
    global_speaker: bool = False  # speaker ids are one namespace across datasets (select keeps them in one split)
    keep_columns: Optional[list[str]] = None  # extra columns kept as metadata (None: all)

    def __post_init__(self) -> None:
        if Path(self.table).suffix.lower() not in SUFFIXES:
            raise DatasetError(f"table option table: {self.table!r} is not a .parquet, .csv or .jsonl file")
        if (self.columns.start is None) != (self.columns.end is None):
            raise DatasetError("table option columns: give both start and end (or neither: whole files)")
        if "{}" not in self.path_format:
            raise DatasetError(f"table option path_format: {self.path_format!r} has no {{}} for the path column's value")


def list_sources(raw_dir: Path, options: Options) -> list[SourceVideo]:
    table_path = Path(options.table) if Path(options.table).is_absolute() else raw_dir / options.table
    rows = read_table(table_path)
    cols = options.columns
    named = [c for c in (cols.path, cols.start, cols.end, cols.speaker) if c is not None]
    if rows:
        missing = [c for c in named if c not in rows[0]]
        if missing:
            raise DatasetError(f"{table_path}: no column {missing[0]!r} (columns: {', '.join(rows[0])}); "
                               f"fix datasets.<name>.columns")
    keep = None if options.keep_columns is None else set(options.keep_columns)
    scale = 1000.0 if options.time_unit == "ms" else 1.0
    out, seen = [], {}
    for i, row in enumerate(rows):
        value = row[cols.path]
        if value is None or str(value).strip() == "":
            raise DatasetError(f"{table_path}: row {i} has an empty {cols.path!r}; every row must name a video")
        path, rel = _resolve(raw_dir, options.path_format.replace("{}", str(value).strip()))
        span = None
        if cols.start is not None:
            start, end = _seconds(row[cols.start]), _seconds(row[cols.end])
            if start is not None or end is not None:  # one missing: a bad_range reject at ingest
                span = ((start if start is not None else math.nan) / scale, (end if end is not None else math.nan) / scale)
        if (rel, span) in seen:
            log.warning("table: %s row %d repeats row %d (%s %s): left out", table_path.name, i, seen[(rel, span)], rel, span)
            continue
        seen[(rel, span)] = i
        meta: dict[str, Any] = {"row": i}
        for k, v in row.items():
            if k not in named and (keep is None or k in keep):
                meta[k] = _json_safe(v)
        if cols.speaker is not None and row[cols.speaker] is not None and str(row[cols.speaker]).strip():
            meta["speaker"] = str(row[cols.speaker]).strip()
            if options.global_speaker:
                meta["speaker_scope"] = "global"
        out.append(SourceVideo(path=path, rel=rel, meta=meta, range=span))
    return out


def read_table(path: Path) -> list[dict[str, Any]]:
    """The rows of a .parquet, .csv or .jsonl table as dicts (pyarrow readers, column types inferred)."""
    if not path.is_file():
        raise DatasetError(f"{path}: metadata table not found (fix datasets.<name>.table)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif suffix == ".csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(path)
        else:
            import pyarrow.json as pajson

            table = pajson.read_json(path)
    except Exception as e:  # pyarrow raises ArrowInvalid and friends: name the file
        raise DatasetError(f"{path}: cannot read the table ({type(e).__name__}: {e})") from None
    return table.to_pylist()


def _resolve(raw_dir: Path, value: str) -> tuple[Path, str]:
    """``(absolute path, rel)`` of a row's file: rel is relative to raw_dir when the file is under it."""
    p = Path(value)
    path = p if p.is_absolute() else raw_dir / p
    path = Path(*path.parts)  # normalise separators
    try:
        rel = path.relative_to(raw_dir).as_posix()
    except ValueError:
        rel = path.as_posix().lstrip("/")
    return path, rel


def _seconds(value: Any) -> float | None:
    """A time cell as a number: numbers as they are, ``"75.5"``, ``"01:15.5"``, ``"0:01:15.5"``; empty -> None."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if math.isnan(value) else float(value)
    text = str(value).strip()
    if not text:
        return None
    total = 0.0
    try:
        for part in text.split(":"):
            total = total * 60 + float(part)
    except ValueError:
        return math.nan  # not a time: a bad_range reject names it
    return total


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time, datetime.timedelta)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
