"""Load and validate the order table a spec names (CSV, gzip CSV or Parquet).

`load_orders(spec)` returns an `OrderTable` of plain numpy columns sorted by order time, or
raises `SpecError` naming the file, the column and the first bad rows. Rows are reported as
CSV line numbers (the header is line 1) or as Parquet row numbers (the first row is 1).

Times without an offset are local to `[dataset] timezone`, and so are dates alone (`2025-03-04`,
or a Parquet date): a promised date is a deadline at the end of that local day; a `fulfilled_at`
column of dates only ("ready on the 4th") reads each as the last instant of its day, so that a
delivery on day D keeps a promise for D and breaks one for D - 1 wherever it is compared
(`OrderTable.fulfilled_precision` says which the table holds); any other date is its local
midnight.

The table is read by pyarrow, only the spec's columns (`_read`); a file pyarrow cannot parse is
read again by pandas' slower reader, which names the line of a bad row (or reads what pyarrow
refused, as it always did). `[model] history_days` keeps only the orders placed within that
many days before the newest one: a Parquet file's older row groups are skipped by their
statistics, never decoded; a CSV file's older rows are dropped right after the order times are
parsed. Errors name a row by its place in the file either way.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from models.errors import SpecError
from models.features import category_label
from training.spec import Spec

FloatArray = NDArray[np.float64]
ObjectArray = NDArray[np.object_]

SHOWN_BAD_ROWS = 5
# Orders placed before this are surely a data error (and beyond the calendar's tables).
EARLIEST_PLAUSIBLE = pd.Timestamp("1990-01-01", tz="UTC")
LATEST_PLAUSIBLE = pd.Timestamp("2100-01-01", tz="UTC")
# A UTC offset ("Z", "+01:00", "-0300", "-03") ends a timestamp only after its time part: the
# "-04" that ends the date "2025-03-04" is its day, and a date alone is local to the spec's zone.
_OFFSET_SUFFIX = re.compile(r"(?:Z|[T\s][\d:.,]+\s?[+-]\d{2}(?::?\d{2})?)$")
_DATE_ONLY = r"\d{4}-\d{2}-\d{2}"
# The same suffix for pyarrow's RE2 over ASCII text, where it matches exactly what Python's
# `re` does: `\d` is [0-9] there, Python's `\s` is spelled out (RE2's lacks \v, \x1c-\x1f) and
# so is its `$`, which also matches before a final newline.
_SPACE = r"[ \t\n\r\x0b\x0c\x1c-\x1f]"
_OFFSET_SUFFIX_ASCII = rf"(?:Z|(?:T|{_SPACE})[0-9:.,]+{_SPACE}?[+-][0-9]{{2}}(?::?[0-9]{{2}})?)\n?$"
# The loader's resolution: a delivery stamped with its day alone is read this long before the
# next local midnight, the last instant of its day.
_RESOLUTION = pd.Timedelta(microseconds=1)


@dataclass(frozen=True)
class OrderTable:
    """Orders as numpy columns, sorted by `ordered_at_s` (seconds since the epoch, UTC)."""

    source: Path
    ids: ObjectArray
    ordered_at_s: FloatArray
    fulfilled_at_s: FloatArray  # NaN while the order is still open
    company_deadline_s: FloatArray | None  # the business's own promise, as a deadline
    columns: Mapping[str, NDArray[Any]]  # categorical: str or None; numeric: float64 with NaN
    rows_read: int
    skipped: Mapping[str, int] = field(default_factory=dict)
    # "day": the file stamps deliveries with their date only, each read as its day's last
    # instant; "time": deliveries carry a time of day.
    fulfilled_precision: Literal["day", "time"] = "time"

    @property
    def size(self) -> int:
        return int(self.ordered_at_s.size)

    @property
    def is_open(self) -> NDArray[np.bool_]:
        return np.isnan(self.fulfilled_at_s)

    @property
    def as_of_s(self) -> float:
        """The extraction moment: the latest timestamp in the table."""
        latest = np.nanmax(self.fulfilled_at_s) if (~self.is_open).any() else -np.inf
        return float(max(latest, self.ordered_at_s.max()))

    def subset(self, mask: NDArray[np.bool_] | NDArray[np.intp]) -> OrderTable:
        """The rows selected by a boolean mask or index array (order kept)."""
        return replace(
            self,
            ids=self.ids[mask],
            ordered_at_s=self.ordered_at_s[mask],
            fulfilled_at_s=self.fulfilled_at_s[mask],
            company_deadline_s=(
                None if self.company_deadline_s is None else self.company_deadline_s[mask]
            ),
            columns={name: values[mask] for name, values in self.columns.items()},
        )

    def fingerprint(self) -> str:
        """A short content hash of what the model learns from."""
        # Python ints: numpy's uint64 sum of the two would overflow (and warn).
        hashed = int(pd.util.hash_array(self.ordered_at_s).sum()) + int(
            pd.util.hash_array(np.nan_to_num(self.fulfilled_at_s, nan=-1.0)).sum()
        )
        return f"{int(hashed) % (1 << 63):016x}-{self.size}"


def load_orders(spec: Spec, *, careful: bool = False) -> OrderTable:
    """Read and validate the spec's order table.

    `careful` reads it the slow way throughout (pandas' CSV reader, each value converted on its
    own): the reference the fast path is tested against, and what names a bad CSV line."""
    try:
        return _load_orders(spec, careful)
    finally:  # pyarrow's allocator keeps the text's freed pages (~250 MiB a million orders)
        pa.default_memory_pool().release_unused()  # that training (numpy) would never reuse


def _load_orders(spec: Spec, careful: bool) -> OrderTable:
    path = spec.data_path
    dataset = spec.dataset
    needed = [dataset.id, dataset.ordered_at, dataset.fulfilled_at, *spec.feature_names]
    if dataset.company_promise:
        needed.append(dataset.company_promise)
    days = spec.model.history_days
    read = _read(path, needed, careful, None if days is None else (dataset, days))
    frame = read.frame
    if frame.empty:
        raise SpecError(f"{path}: the table is empty (no order rows)")
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise SpecError(
            f"{path}: missing column{plural} {', '.join(repr(m) for m in missing)}; "
            f"the file has {', '.join(map(str, read.file_columns))}"
        )
    rows = _row_namer(path)
    # Without a window the ids are checked first, as they always were; with one, only the
    # orders in the window need theirs.
    ids = None if days is not None else _ids(frame[dataset.id], path, dataset.id, rows, careful)
    ordered = _ordered(frame[dataset.ordered_at], dataset.timezone, path, dataset.ordered_at, rows)
    if days is not None:
        recent = (ordered >= ordered.max() - pd.Timedelta(days=days)).to_numpy()
        frame, ordered = frame.loc[recent], ordered.loc[recent]
        ids = _ids(frame[dataset.id], path, dataset.id, rows, careful)
    assert ids is not None
    by_day = _holds_dates_only(frame[dataset.fulfilled_at])
    # A delivery stamped with its day alone happened some time that day: read as the day's last
    # instant it keeps a promise for that day and none for an earlier one, in scoring and in
    # calibration alike, and is never before an order placed the same day.
    read_fulfilled = _last_instants if by_day else _timestamps
    fulfilled = read_fulfilled(
        frame[dataset.fulfilled_at], dataset.timezone, path, dataset.fulfilled_at, rows
    )
    for column, stamps in ((dataset.ordered_at, ordered), (dataset.fulfilled_at, fulfilled)):
        too_late = (stamps >= LATEST_PLAUSIBLE).to_numpy()
        if too_late.any():
            _fail(
                path,
                column,
                np.flatnonzero(too_late),
                rows,
                frame[column],
                f"is after {LATEST_PLAUSIBLE:%Y-%m-%d}: not a plausible time",
            )
    before = (fulfilled < ordered).to_numpy()
    if before.any():
        _fail(
            path,
            dataset.fulfilled_at,
            np.flatnonzero(before),
            rows,
            frame[dataset.fulfilled_at],
            "is before the order time",
        )
    company = None
    if dataset.company_promise:
        company = _company_deadlines(
            frame[dataset.company_promise], dataset.timezone, path, dataset.company_promise, rows
        )
    columns: dict[str, NDArray[Any]] = {}
    for name in spec.features.categorical:
        columns[name] = _categories(frame[name], careful)
    for name in spec.features.numeric:
        columns[name] = _numbers(frame[name], path, name, rows, careful)
    order = np.argsort(_seconds(ordered), kind="stable")
    skipped = read.rows_in_file - len(frame)
    table = OrderTable(
        source=path,
        ids=ids,
        ordered_at_s=_seconds(ordered),
        fulfilled_at_s=_seconds(fulfilled),
        company_deadline_s=None if company is None else _seconds(company),
        columns=columns,
        rows_read=read.rows_in_file,
        skipped={WINDOW_SKIP: skipped} if days is not None else {},
        fulfilled_precision="day" if by_day else "time",
    )
    return table.subset(order)


WINDOW_SKIP = "placed before the history window"


def _ordered(values: pd.Series, zone: str, path: Path, column: str, rows: str) -> pd.Series:
    """The order times in UTC; every order needs a plausible one."""
    ordered = _timestamps(values, zone, path, column, rows)
    if ordered.isna().any():
        _fail(
            path,
            column,
            np.flatnonzero(ordered.isna().to_numpy()),
            rows,
            values,
            "is empty: every order needs its order time",
        )
    too_early = (ordered < EARLIEST_PLAUSIBLE).to_numpy()
    if too_early.any():
        _fail(
            path,
            column,
            np.flatnonzero(too_early),
            rows,
            values,
            f"is before {EARLIEST_PLAUSIBLE:%Y-%m-%d}: not a plausible order time",
        )
    return ordered


@dataclass(frozen=True)
class _Read:
    """What `_read` found: the spec's columns present in the file (index: each row's 0-based
    place in the file), every column the file has, and how many rows it holds."""

    frame: pd.DataFrame
    file_columns: Sequence[str]
    rows_in_file: int


def _read(
    path: Path,
    needed: Sequence[str],
    careful: bool,
    window: tuple[Any, float] | None,
) -> _Read:
    suffixes = "".join(path.suffixes[-2:]).lower()
    is_parquet = suffixes.endswith(".parquet") or suffixes.endswith(".pq")
    if not is_parquet and not (suffixes.endswith(".csv") or suffixes.endswith(".csv.gz")):
        if not path.exists():
            raise SpecError(f"{path}: no such data file")
        raise SpecError(f"{path}: unknown file type; use .csv, .csv.gz or .parquet")
    try:
        if is_parquet:
            return _read_parquet(path, needed, window)
        if not careful:
            fast = _read_csv_fast(path, needed)
            if fast is not None:
                return fast
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8"
        )
        file_columns = list(map(str, frame.columns))
        # pandas makes the cells of rows longer than the header an index: rows are places here.
        frame.index = pd.RangeIndex(len(frame))
        return _Read(frame, file_columns, len(frame))
    except FileNotFoundError as err:
        raise SpecError(f"{path}: no such data file") from err
    except UnicodeDecodeError as err:
        line = _first_non_utf8_line(path)
        raise SpecError(
            f"{path}: line {line}: bytes that are not UTF-8 ({err.reason}); save the file as UTF-8"
        ) from err
    except pd.errors.EmptyDataError as err:
        raise SpecError(f"{path}: the file is empty") from err
    except pd.errors.ParserError as err:
        raise SpecError(f"{path}: malformed CSV: {err}") from err
    except (OSError, ValueError) as err:
        raise SpecError(f"{path}: cannot read the table: {err}") from err


def _read_csv_fast(path: Path, needed: Sequence[str]) -> _Read | None:
    """The spec's columns as text by pyarrow's CSV reader, as pandas' reads them (`dtype=str`,
    only empty cells missing); None when pyarrow cannot read the file or the header has a
    column missing or twice (pandas' reader then reads it, or says what is wrong)."""
    parse = pa_csv.ParseOptions(newlines_in_values=True)
    try:
        with pa_csv.open_csv(path, parse_options=parse) as head:
            names = head.schema.names
        if len(set(names)) < len(names) or not set(needed) <= set(names):
            return None
        table = pa_csv.read_csv(
            path,
            parse_options=parse,
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(dict.fromkeys(needed)),
                column_types={name: pa.string() for name in needed},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, OSError, ValueError):
        return None
    return _Read(table.to_pandas(), names, table.num_rows)


def _read_parquet(path: Path, needed: Sequence[str], window: tuple[Any, float] | None) -> _Read:
    """The spec's columns of a Parquet file; with a window, only the row groups whose newest
    order time (by the file's statistics) can fall within it are decoded."""
    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    present = [name for name in dict.fromkeys(needed) if name in names]
    total = file.metadata.num_rows
    groups = None if window is None else _recent_row_groups(file, path, *window)
    if groups is None:
        return _Read(pd.read_parquet(path, columns=present), names, total)
    table = file.read_row_groups(groups, columns=present, use_pandas_metadata=False)
    sizes = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
    starts = np.cumsum([0, *sizes])
    index = np.concatenate(
        [np.arange(starts[i], starts[i + 1]) for i in groups] or [np.zeros(0, dtype=np.int64)]
    )
    frame = table.to_pandas()
    frame.index = pd.Index(index)
    return _Read(frame, names, total)


def _recent_row_groups(
    file: pq.ParquetFile, path: Path, dataset: Any, days: float
) -> list[int] | None:
    """The row groups whose newest order time is at most `days` before the file's newest, by
    the row groups' statistics; None (decode them all) when the order times are not typed as
    times or dates or a row group has no statistics for them."""
    column = dataset.ordered_at
    arrow_type = file.schema_arrow.field(column).type
    if not (pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type)):
        return None
    metadata = file.metadata
    leaf = [metadata.schema.column(i).path for i in range(metadata.num_columns)].index(column)
    maxima = []
    for group in range(file.num_row_groups):
        stats = metadata.row_group(group).column(leaf).statistics
        if stats is None or not stats.has_min_max:
            return None
        maxima.append(stats.max)
    newest = _timestamps(
        pd.Series(pa.array(maxima, type=arrow_type).to_pandas()),
        dataset.timezone,
        path,
        column,
        "row",
    )
    bound = newest.max() - pd.Timedelta(days=days)
    return [int(g) for g in np.flatnonzero((newest >= bound).to_numpy())]


def _first_non_utf8_line(path: Path) -> int:
    """The 1-based line holding the first bytes that are not UTF-8 (0 if none is found)."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _row_namer(path: Path) -> str:
    return "row" if path.suffix.lower() in {".parquet", ".pq"} else "line"


def _where(values: pd.Series, positions: NDArray[np.intp], rows: str) -> list[int]:
    # The index holds each row's 0-based place in the file; CSV lines count the header as 1.
    first = 2 if rows == "line" else 1
    places = np.asarray(values.index[positions[:SHOWN_BAD_ROWS]], dtype=np.int64)
    return [int(p) + first for p in places]


def _fail(
    path: Path, column: str, positions: NDArray[np.intp], rows: str, values: pd.Series, problem: str
) -> None:
    shown = ", ".join(
        f"{rows} {number} ({values.iloc[int(p)]!r})"
        for number, p in zip(
            _where(values, positions, rows), positions[:SHOWN_BAD_ROWS], strict=True
        )
    )
    more = (
        "" if positions.size <= SHOWN_BAD_ROWS else f" and {positions.size - SHOWN_BAD_ROWS} more"
    )
    raise SpecError(f"{path}: column {column!r} {problem}: {shown}{more}")


def _ids(
    values: pd.Series, path: Path, column: str, rows: str, careful: bool = False
) -> ObjectArray:
    if careful or not isinstance(values.dtype, pd.StringDtype):
        labels = _categories(values, careful=True)
    else:  # each id is its own text: a row's own object, without _categories' hashing
        labels = np.asarray(values.array.to_numpy(dtype=object, na_value=None))
        labels[labels == ""] = None
    empty = np.flatnonzero([v is None for v in labels])
    if empty.size:
        _fail(path, column, empty, rows, values, "is empty: every order needs an id")
    duplicated = values.duplicated(keep="first").to_numpy()
    if duplicated.any():
        _fail(
            path,
            column,
            np.flatnonzero(duplicated),
            rows,
            values,
            "has duplicate ids (each order must appear once)",
        )
    return labels


def _timestamps(values: pd.Series, zone: str, path: Path, column: str, rows: str) -> pd.Series:
    """UTC timestamps (NaT where empty); naive times and dates alone (text `YYYY-MM-DD`, a
    Parquet date) are local to `zone`, a date meaning its local midnight."""
    values = _numpy_backed(values)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return pd.Series(values.dt.tz_convert("UTC").dt.as_unit("us"))
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _localize(pd.Series(values).dt.as_unit("us"), zone)
    text = values.astype("string").str.strip()
    present = text.notna() & (text != "")
    with_offset = present & _has_offset(text)
    # Microseconds cover years 1 to 9999, so any date a file can hold is representable.
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    if with_offset.any():
        aware = pd.to_datetime(text[with_offset], errors="coerce", utc=True, format="ISO8601")
        result[with_offset] = aware.dt.as_unit("us")
    naive = present & ~with_offset
    if naive.any():
        parsed = pd.to_datetime(text[naive], errors="coerce", format="ISO8601")
        result[naive] = _localize(parsed.dt.as_unit("us"), zone)
    bad = (present & result.isna()).to_numpy()
    if bad.any():
        _fail(
            path,
            column,
            np.flatnonzero(bad),
            rows,
            values,
            "has values that are not ISO timestamps like '2024-03-14 10:30:00'",
        )
    return result


def _has_offset(text: pd.Series) -> pd.Series:
    """Whether each (stripped) text ends in a UTC offset: by pyarrow's regular expressions
    when the column is ASCII (where they agree with Python's), else by Python's."""
    arrow = pa.array(text.array, type=pa.large_string())  # a ChunkedArray: no copy
    if pc.all(pc.string_is_ascii(arrow)).as_py() is not False:
        found = pc.match_substring_regex(arrow, _OFFSET_SUFFIX_ASCII).fill_null(False)
        return pd.Series(np.asarray(found, dtype=bool), index=text.index)
    return text.str.contains(_OFFSET_SUFFIX, na=False)


def _numpy_backed(values: pd.Series) -> pd.Series:
    """Arrow-backed columns (Parquet dates and times) as the numpy-backed ones parsed here:
    a date becomes its ISO text (a promised date means the end of that day), a time a
    datetime64 column, anything else text to be validated as such."""
    dtype = values.dtype
    if not isinstance(dtype, pd.ArrowDtype):
        return values
    arrow = dtype.pyarrow_dtype
    if pa.types.is_timestamp(arrow):
        if arrow.tz:
            return pd.Series(values.astype(pd.DatetimeTZDtype(unit="us", tz=arrow.tz)))
        return pd.Series(values.astype(np.dtype("datetime64[us]")))
    return values.astype("string")


def _localize(parsed: pd.Series, zone: str) -> pd.Series:
    # An hour repeated at a daylight-saving change is read as its first occurrence; an hour
    # skipped by one moves forward, as a clock on the wall would.
    localized = parsed.dt.tz_localize(
        zone, ambiguous=np.ones(len(parsed), dtype=bool), nonexistent="shift_forward"
    ).dt.tz_convert("UTC")
    return pd.Series(localized)


def _company_deadlines(
    values: pd.Series, zone: str, path: Path, column: str, rows: str
) -> pd.Series:
    """The company's promise as a deadline: the end of a promised date, or a promised time."""
    values = _numpy_backed(values)
    is_date = _text(values).str.fullmatch(_DATE_ONLY, na=False).to_numpy()
    result = _timestamps(values.where(~is_date, other=None), zone, path, column, rows)
    if is_date.any():
        ends = _day_ends(values.where(is_date, other=None), zone, path, column, rows)
        result[is_date] = ends[is_date]
    return result


def _holds_dates_only(values: pd.Series) -> bool:
    """Whether every non-empty value is a date alone (text `YYYY-MM-DD` or a Parquet date)."""
    values = _numpy_backed(values)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return False  # a time of day, even if every one is midnight
    text = _text(values)
    present = text[text.notna() & (text != "")]
    return bool(present.size) and bool(present.str.fullmatch(_DATE_ONLY).all())


def _day_ends(values: pd.Series, zone: str, path: Path, column: str, rows: str) -> pd.Series:
    """UTC instants (NaT where empty) where each local date ends: the next local midnight.

    Every non-empty value must be a date alone; a date that does not exist fails."""
    text = _text(_numpy_backed(values))
    present = (text.notna() & (text != "")).to_numpy()
    days = pd.to_datetime(text.where(present, other=None), errors="coerce", format="%Y-%m-%d")
    bad = present & days.isna().to_numpy()
    if bad.any():
        _fail(path, column, np.flatnonzero(bad), rows, values, "has invalid dates")
    return _localize(days.dt.as_unit("us") + pd.Timedelta(days=1), zone)


def _last_instants(values: pd.Series, zone: str, path: Path, column: str, rows: str) -> pd.Series:
    """UTC instants (NaT where empty) of the last microsecond of each local date."""
    return pd.Series(_day_ends(values, zone, path, column, rows) - _RESOLUTION)


def _text(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip()


def _categories(values: pd.Series, careful: bool = False) -> ObjectArray:
    """Each value's `category_label`: for text, the text itself, None where empty."""
    if careful or not isinstance(values.dtype, pd.StringDtype):
        return np.array([category_label(v) for v in values], dtype=object)
    # One Python text per distinct value, shared by its rows (a column holds few: stores,
    # lens types), not one per row: ~8 bytes a row instead of ~60. Missing (-1) is the last.
    codes, uniques = pd.factorize(values)
    distinct: ObjectArray = np.array([*uniques.to_numpy(dtype=object), None], dtype=object)
    distinct[distinct == ""] = None
    labels: ObjectArray = distinct[codes]
    return labels


def _numbers(
    values: pd.Series, path: Path, column: str, rows: str, careful: bool = False
) -> FloatArray:
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.asarray(values.to_numpy(dtype=np.float64), dtype=np.float64)
    text = values.astype("string").str.strip()
    if careful:
        numbers, bad = _parse_numbers(text)
    else:
        # Each distinct text is parsed once: a column holds few (counts, flags, sizes).
        codes, uniques = pd.factorize(text)
        distinct, distinct_bad = _parse_numbers(pd.Series(uniques, dtype=text.dtype))
        # A missing cell's code is -1: the appended last entry (also when all are missing).
        numbers = np.append(distinct, np.nan)[codes]
        bad = np.append(distinct_bad, False)[codes]
    if bad.any():
        _fail(path, column, np.flatnonzero(bad), rows, values, "has values that are not numbers")
    infinite = np.isinf(numbers)
    if infinite.any():
        _fail(
            path,
            column,
            np.flatnonzero(infinite),
            rows,
            values,
            "has infinite values (leave a cell empty for a missing value)",
        )
    return numbers


def _parse_numbers(text: pd.Series) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Each stripped text as a number (NaN where empty or not a number; true and false in any
    case are 1 and 0), and where a text is not a number."""
    lowered = text.str.lower()
    text = text.mask(lowered.isin(["true", "false"]), (lowered == "true").astype("string"))
    text = text.mask(text.isin(["True"]), "1").mask(text.isin(["False"]), "0")
    numbers = pd.to_numeric(text, errors="coerce").astype(np.float64)
    bad = (text.notna() & (text != "") & numbers.isna()).to_numpy(dtype=bool)
    parsed = np.asarray(numbers.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    return parsed, bad


def _seconds(stamps: pd.Series) -> FloatArray:
    """Epoch seconds (float64, NaN for NaT) from UTC timestamps."""
    values = stamps.dt.as_unit("us").to_numpy(dtype="datetime64[us]", na_value=np.datetime64("NaT"))
    seconds: FloatArray = values.astype("int64").astype(np.float64) / 1e6
    seconds[np.isnat(values)] = np.nan
    return seconds
