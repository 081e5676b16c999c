"""Forecasting series from a CSV with a date column, in TS2Vec's forecasting layout.

One file holds one long series: a date column and numeric columns (ETT, electricity, weather and
traffic all have this shape).  :func:`load_forecast_csv` returns it as a single ``(1, T, C)`` array
whose first channels are seven calendar covariates (minute, hour, day of week, day of month, day of
year, month, ISO week) and whose last channels are the targets, both z-scored on the training slice,
with TS2Vec's train / validation / test slices and forecast horizons for the file.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

#: The calendar covariates, in the order of the first channels of ``ForecastDataset.data``.
COVARIATES = ("minute", "hour", "day_of_week", "day_of_month", "day_of_year", "month", "iso_week")

_MONTH = 30 * 24  # the ETT splits count months of 30 days, in hourly steps
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst", ".tar")


class ForecastDataset(NamedTuple):
    """One series ready for the forecasting protocol.

    ``data`` is ``(1, T, n_covariates + len(columns))`` float32: the calendar covariates first, then the
    targets named by ``columns``, all z-scored on ``train_slice``; ``scaler`` maps the target channels
    back to the file's scale (``scaler.inverse_transform(data[0, :, n_covariates:])``).
    """

    name: str
    data: np.ndarray
    train_slice: slice
    valid_slice: slice
    test_slice: slice
    horizons: list[int]
    n_covariates: int
    columns: list[str]
    scaler: StandardScaler
    dates: np.ndarray  # datetime64[ns], one per timestep


def load_forecast_csv(
    path,
    target=None,
    *,
    date_column: str = "date",
    splits=None,
    horizons=None,
    covariates: bool = True,
) -> ForecastDataset:
    """Load the series in the CSV at ``path`` with TS2Vec's forecasting conventions.

    ``target``: ``None`` takes every column besides ``date_column`` (the multivariate setting), a
    column name takes that column alone (the univariate setting, e.g. ``"OT"``), a list takes those
    columns in that order.  Every target must be numeric, with no missing or infinite value.

    ``splits``: by default TS2Vec's rule for the file's name: ``ETTh*`` trains on the first 12 months
    of 30 days of hourly steps, validates on the next 4 and tests on the next 4; ``ETTm*`` the same in
    15-minute steps; any other file 60% / 20% / 20%, the test slice running to the end.  Rows after
    the test slice stay in ``data``.  Override with three step counts ``(train, valid, test)`` or three
    fractions of the series' length summing to at most 1.

    ``horizons``: by default 24, 48, 168, 336, 720 for ``ETTh*`` and ``electricity``, else 24, 48, 96,
    288, 672; override with positive ints.  Each must leave at least one forecast in the validation
    and test slices (slice length > horizon).

    ``covariates=False`` leaves the calendar covariates out (``n_covariates == 0``).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming a CSV file, got {type(path).__name__}")
    path = Path(path)
    if not isinstance(date_column, str):
        raise TypeError(f"date_column must be a str, got {type(date_column).__name__}")
    if not isinstance(covariates, bool):
        raise TypeError(f"covariates must be a bool, got {type(covariates).__name__}")
    if not path.is_file():
        raise FileNotFoundError(f"forecasting CSV {str(path)!r} does not exist or is not a file")
    name = _dataset_name(path)

    frame = _read_csv(path, date_column)
    dates = _parse_dates(frame[date_column], path, date_column)
    columns = _target_columns(frame, target, path, date_column)
    values = _target_values(frame, columns, path)

    length = len(frame)
    train_slice, valid_slice, test_slice = _splits(name, length, splits, path)
    horizons = _horizons(name, horizons, valid_slice, test_slice, path)

    scaler = StandardScaler().fit(values[train_slice])
    channels = [scaler.transform(values)]
    n_covariates = 0
    if covariates:
        calendar = _calendar_features(dates)
        channels.insert(0, StandardScaler().fit(calendar[train_slice]).transform(calendar))
        n_covariates = calendar.shape[1]
    data = np.concatenate(channels, axis=1).astype(np.float32)[np.newaxis]

    return ForecastDataset(
        name=name,
        data=data,
        train_slice=train_slice,
        valid_slice=valid_slice,
        test_slice=test_slice,
        horizons=horizons,
        n_covariates=n_covariates,
        columns=columns,
        scaler=scaler,
        dates=dates,
    )


def _dataset_name(path: Path) -> str:
    """The file's stem, with a compression suffix and then ``.csv`` removed (``ETTh1.csv.gz`` -> ``ETTh1``)."""
    name = path.name
    for suffix in _COMPRESSION_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[:-4] if name.lower().endswith(".csv") else Path(name).stem


def _read_csv(path: Path, date_column: str) -> pd.DataFrame:
    try:
        # Dates are read as text so that pandas never takes a number column for nanoseconds since 1970.
        frame = pd.read_csv(path, dtype={date_column: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} cannot be read as a CSV file: {err}") from err
    if date_column not in frame.columns:
        raise ValueError(
            f"{str(path)!r} has no date column {date_column!r}; its columns are {list(frame.columns)} "
            "(pass date_column= to name another)"
        )
    if len(frame) == 0:
        raise ValueError(f"{str(path)!r} has a header but no rows")
    return frame


def _parse_dates(text: pd.Series, path: Path, date_column: str) -> np.ndarray:
    """The date column as datetime64[ns] (wall-clock time for zone-aware dates), strictly increasing."""
    try:
        parsed = pd.to_datetime(text, errors="coerce")
    except (ValueError, TypeError) as err:  # e.g. dates with different UTC offsets
        raise ValueError(f"{str(path)!r}: column {date_column!r} cannot be parsed as dates: {err}") from err
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        value = text.iloc[row]
        what = "is empty" if pd.isna(value) else f"has {value!r}, which does not parse as a date"
        hint = "" if pd.isna(value) or row == 0 else f" in the format of row 0 ({text.iloc[0]!r})"
        raise ValueError(
            f"{str(path)!r}: column {date_column!r} {what}{hint} at row {row} "
            f"(0-based, after the header; {bad.size} such row(s) in all)"
        )
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_localize(None)
    dates = parsed.to_numpy().astype("datetime64[ns]")
    steps = np.diff(dates)
    not_increasing = np.flatnonzero(steps <= np.timedelta64(0, "ns"))
    if not_increasing.size:
        row = int(not_increasing[0]) + 1
        raise ValueError(
            f"{str(path)!r}: column {date_column!r} must be strictly increasing, but row {row} "
            f"({text.iloc[row]!r}) does not come after row {row - 1} ({text.iloc[row - 1]!r})"
        )
    return dates


def _target_columns(frame: pd.DataFrame, target, path: Path, date_column: str) -> list[str]:
    others = [str(c) for c in frame.columns if c != date_column]
    if target is None:
        if not others:
            raise ValueError(f"{str(path)!r} has no column besides the date column {date_column!r}")
        return others
    if isinstance(target, str):
        columns = [target]
    elif isinstance(target, (list, tuple)) and target and all(isinstance(c, str) for c in target):
        columns = list(target)
    else:
        raise TypeError(f"target must be None, a column name or a non-empty list of column names, got {target!r}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"target names a column more than once: {columns}")
    for column in columns:
        if column == date_column:
            raise ValueError(f"target {column!r} is the date column of {str(path)!r}")
        if column not in frame.columns:
            raise ValueError(f"{str(path)!r} has no column {column!r} (target); its columns are {list(frame.columns)}")
    return columns


def _target_values(frame: pd.DataFrame, columns: list[str], path: Path) -> np.ndarray:
    """The target columns as a (T, n_targets) float64 array, each column numeric and finite."""
    for column in columns:
        series = frame[column]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            text = series.notna() & pd.to_numeric(series, errors="coerce").isna()
            if text.any():
                row = int(np.flatnonzero(text.to_numpy())[0])
                detail = f"row {row} (0-based, after the header) has {series.iloc[row]!r}"
            else:
                detail = f"its dtype is {series.dtype}"
            raise ValueError(
                f"{str(path)!r}: column {column!r} is not numeric: {detail}; choose numeric columns with target="
            )
    values = frame[columns].to_numpy(dtype=np.float64)
    for j, column in enumerate(columns):
        bad = np.flatnonzero(~np.isfinite(values[:, j]))
        if bad.size:
            row = int(bad[0])
            raise ValueError(
                f"{str(path)!r}: column {column!r} has a missing or infinite value ({values[row, j]}) at row "
                f"{row} (0-based, after the header; {bad.size} such row(s) in all)"
            )
    return values


def _splits(name: str, length: int, splits, path: Path) -> tuple[slice, slice, slice]:
    """The train, validation and test slices: the ``splits`` override or TS2Vec's rule for ``name``."""
    if splits is None:
        if name.startswith("ETTh") or name.startswith("ETTm"):
            step = _MONTH * (4 if name.startswith("ETTm") else 1)
            bounds = (12 * step, 16 * step, 20 * step)
            rule = f"the {name[:4]}* rule (12/4/4 months of 30 days)"
        else:
            bounds = (int(0.6 * length), int(0.8 * length), length)
            rule = "the 60/20/20 rule"
    else:
        if not isinstance(splits, (list, tuple)) or len(splits) != 3:
            raise TypeError(f"splits must be three step counts or three fractions (train, valid, test), got {splits!r}")
        if all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in splits):
            if any(s <= 0 for s in splits):
                raise ValueError(f"splits as step counts must all be positive, got {tuple(splits)}")
            a, b, c = (int(s) for s in splits)
            bounds = (a, a + b, a + b + c)
            rule = f"splits={tuple(int(s) for s in splits)}"
        elif all(isinstance(s, numbers.Real) and not isinstance(s, (bool, numbers.Integral)) for s in splits):
            fractions = tuple(float(s) for s in splits)
            if any(not 0.0 < f < 1.0 for f in fractions):
                raise ValueError(f"splits as fractions must each be in (0, 1), got {fractions}")
            if sum(fractions) > 1.0 + 1e-9:
                raise ValueError(f"splits as fractions must sum to at most 1, got {fractions} (sum {sum(fractions)})")
            # The small margin keeps float rounding from losing a step: (0.6, 0.2, 0.2) ends at int(0.8 * T).
            cumulative = np.cumsum(fractions)
            bounds = tuple(min(length, int(f * length + 1e-9)) for f in cumulative)
            rule = f"splits={fractions}"
        else:
            raise TypeError(f"splits must be three ints (step counts) or three floats (fractions), got {splits!r}")
    train_end, valid_end, test_end = bounds
    if test_end > length:
        raise ValueError(
            f"{str(path)!r} has {length} rows, fewer than its splits need: {rule} ends the test slice at "
            f"{test_end} (train {train_end}, valid {valid_end - train_end}, test {test_end - valid_end} steps)"
        )
    if not 0 < train_end < valid_end < test_end:
        raise ValueError(
            f"{str(path)!r} has {length} rows, too few for {rule}: it leaves an empty slice "
            f"(train {train_end}, valid {valid_end - train_end}, test {test_end - valid_end} steps)"
        )
    return slice(0, train_end), slice(train_end, valid_end), slice(valid_end, test_end)


def _horizons(name: str, horizons, valid_slice: slice, test_slice: slice, path: Path) -> list[int]:
    if horizons is None:
        if name.startswith("ETTh") or name == "electricity":
            horizons = [24, 48, 168, 336, 720]
        else:
            horizons = [24, 48, 96, 288, 672]
        origin = "default horizons"
    else:
        if (
            not isinstance(horizons, (list, tuple))
            or not horizons
            or not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) for h in horizons)
        ):
            raise TypeError(f"horizons must be a non-empty list of positive ints, got {horizons!r}")
        horizons = [int(h) for h in horizons]
        if any(h <= 0 for h in horizons):
            raise ValueError(f"horizons must be positive, got {horizons}")
        if len(set(horizons)) != len(horizons):
            raise ValueError(f"horizons must be distinct, got {horizons}")
        origin = "horizons"
    for label, part in (("validation", valid_slice), ("test", test_slice)):
        size = part.stop - part.start
        too_long = [h for h in horizons if h >= size]
        if too_long:
            raise ValueError(
                f"{str(path)!r}: horizon {too_long[0]} ({origin} {horizons}) is too long for the {label} slice "
                f"of {size} steps: a horizon must be shorter than each slice (pass horizons= or splits=)"
            )
    return horizons


def _calendar_features(dates: np.ndarray) -> np.ndarray:
    """The (T, 7) calendar covariates of ``dates``, in the order of :data:`COVARIATES`, as float64."""
    index = pd.DatetimeIndex(dates)
    return np.stack(
        [
            index.minute.to_numpy(),
            index.hour.to_numpy(),
            index.dayofweek.to_numpy(),
            index.day.to_numpy(),
            index.dayofyear.to_numpy(),
            index.month.to_numpy(),
            index.isocalendar().week.to_numpy(),
        ],
        axis=1,
    ).astype(np.float64)
