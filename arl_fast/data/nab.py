"""Labelled anomaly series: the Numenta Anomaly Benchmark (NAB) layout, and users' own arrays.

NAB keeps one univariate series per file, ``<folder>/<name>.csv`` with columns ``timestamp,value``, and two
kinds of labels at its root, for each ``"<folder>/<name>.csv"``:

- ``combined_windows.json`` (``labels="windows"``, the default): a list of ``[start, end]`` timestamps; a point
  is anomalous when its timestamp lies in a window, bounds included.  NAB centres each window on its anomaly.
- ``combined_labels.json`` (``labels="points"``): a list of timestamps, one per anomaly, each a timestamp of the
  series; that point alone is anomalous (as TS2Vec's Yahoo and KPI labels mark the anomalous points).

A series whose list is empty has no labelled anomaly: it is kept (TS2Vec pretrains on every series) but is not
scored.

Real series repeat timestamps.  The rule here: **the first row of each timestamp is kept, later rows with
the same timestamp are dropped**, and the count dropped is kept per series (``AnomalySeries.dropped``).
Timestamps must then increase strictly; a file where they do not is refused.  So the time grid of the
scoring (whose step is the smallest gap between timestamps) never has a zero step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

WINDOWS_FILE = "combined_windows.json"
POINTS_FILE = "combined_labels.json"
LABEL_FILES = {"windows": WINDOWS_FILE, "points": POINTS_FILE}


@dataclass
class AnomalySeries:
    """One univariate series with 0/1 labels; ``timestamps`` are int64 (nanoseconds for dates) or None."""

    name: str
    values: np.ndarray
    labels: np.ndarray
    timestamps: np.ndarray | None = None
    labelled: bool = True  # has labelled anomalies (NAB: a non-empty window list), so it is scored
    dropped: int = 0  # rows dropped because their timestamp repeated an earlier row's


@dataclass
class AnomalyDataset:
    """A set of anomaly series: all of them train the encoder, the ``labelled`` ones are scored."""

    name: str
    series: list[AnomalySeries] = field(default_factory=list)
    labels: str = "custom"  # which labels mark the anomalies: NAB's "windows" or "points", or users' own

    @property
    def scored(self) -> list[AnomalySeries]:
        return [s for s in self.series if s.labelled]

    @property
    def n_unlabelled(self) -> int:
        """Series kept for training only, having no labelled anomaly."""
        return sum(not s.labelled for s in self.series)

    @property
    def dropped(self) -> dict[str, int]:
        """Per series with repeated timestamps, the number of rows dropped (the first of each was kept)."""
        return {s.name: s.dropped for s in self.series if s.dropped}

    def describe(self) -> str:
        """One paragraph: how many series, how many scored, which files lost repeated rows."""
        lines = [f"{self.name}: {len(self.series)} series, {len(self.scored)} scored, "
                 f"{self.n_unlabelled} without labelled anomalies (training only)"]
        if self.dropped:
            lines.append("repeated timestamps (first row kept): " +
                         ", ".join(f"{name} {count} dropped" for name, count in self.dropped.items()))
        return "\n".join(lines)


def _timestamps_int64(timestamps, where: str) -> np.ndarray:
    """Timestamps as int64: datetimes (or strings pandas parses) in nanoseconds, integers as they are."""
    stamps = np.asarray(timestamps)
    if stamps.ndim != 1:
        raise ValueError(f"{where}: timestamps must be 1-D, got shape {stamps.shape}")
    if np.issubdtype(stamps.dtype, np.integer):
        return stamps.astype(np.int64)
    if np.issubdtype(stamps.dtype, np.floating):
        if not np.all(np.isfinite(stamps)) or np.any(stamps != np.round(stamps)):
            raise ValueError(f"{where}: numeric timestamps must be whole numbers (e.g. seconds)")
        return stamps.astype(np.int64)
    try:
        parsed = pd.to_datetime(pd.Series(stamps), format="mixed")
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}: timestamps are neither integers nor dates ({error})") from None
    if parsed.isna().any():
        raise ValueError(f"{where}: timestamp {int(np.argmax(parsed.isna().to_numpy()))} is missing")
    return parsed.to_numpy().astype("datetime64[ns]").astype(np.int64)


def keep_first_timestamps(timestamps: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """Indices of the rows to keep (the first row of each timestamp) and how many were dropped.

    ValueError naming ``where`` when the kept timestamps do not increase strictly.
    """
    _, first = np.unique(timestamps, return_index=True)
    keep = np.sort(first)
    kept = timestamps[keep]
    backwards = np.flatnonzero(np.diff(kept) <= 0)
    if len(backwards):
        row = int(keep[backwards[0] + 1]) + 1
        raise ValueError(f"{where}: timestamps go backwards at row {row} (counting from 1; after dropping "
                         "repeated timestamps, first row kept); the series must be in time order")
    return keep, len(timestamps) - len(keep)


def make_series(name: str, values, labels, timestamps=None, labelled: bool | None = None) -> AnomalySeries:
    """Check one series and apply the repeated-timestamp rule; ValueError naming ``name`` on bad input."""
    values = np.asarray(values)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"{name}: values must be a 1-D array of at least 2 points, got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.number):
        raise TypeError(f"{name}: values must be numbers, got dtype {values.dtype}")
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: values hold {int((~np.isfinite(values)).sum())} NaN or infinite points")
    labels = np.asarray(labels)
    if labels.shape != values.shape:
        raise ValueError(f"{name}: labels have shape {labels.shape}, the values {values.shape}: one label per point")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{name}: labels must be 0 or 1")
    labels = labels.astype(np.int8)
    dropped = 0
    if timestamps is not None:
        stamps = _timestamps_int64(timestamps, name)
        if stamps.shape != values.shape:
            raise ValueError(f"{name}: {len(stamps)} timestamps for {len(values)} values")
        keep, dropped = keep_first_timestamps(stamps, name)
        values, labels, timestamps = values[keep], labels[keep], stamps[keep]
    if labelled is None:
        labelled = bool(labels.any())
    return AnomalySeries(name, values, labels, timestamps, labelled, dropped)


def anomaly_dataset(values, labels, timestamps=None, names=None, name: str = "custom") -> AnomalyDataset:
    """Users' own data: a list of 1-D value arrays, a list of matching 0/1 label arrays, optionally a list of
    timestamp arrays (integers or dates; repeated timestamps: first row kept).  A series whose labels are all 0
    trains the encoder but is not scored."""
    if not isinstance(values, (list, tuple)) or not values:
        raise TypeError("values must be a non-empty list of 1-D arrays, one per series")
    if not isinstance(labels, (list, tuple)) or len(labels) != len(values):
        raise ValueError(f"labels must be a list of {len(values)} arrays, one per series")
    if timestamps is not None and (not isinstance(timestamps, (list, tuple)) or len(timestamps) != len(values)):
        raise ValueError(f"timestamps must be None or a list of {len(values)} arrays, one per series")
    names = list(names) if names is not None else [f"series_{i}" for i in range(len(values))]
    if len(names) != len(values):
        raise ValueError(f"names must hold {len(values)} names, got {len(names)}")
    series = [make_series(names[i], values[i], labels[i], None if timestamps is None else timestamps[i])
              for i in range(len(values))]
    return AnomalyDataset(name, series)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise ValueError(f"{path}: cannot read it as CSV ({error})") from None
    missing = [column for column in ("timestamp", "value") if column not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (NAB files have timestamp,value)")
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{path}: value on row {int(np.argmax(bad)) + 1} is not a number")
    try:
        stamps = pd.to_datetime(frame["timestamp"], format="mixed")
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: timestamps are not dates ({error})") from None
    if stamps.isna().any():
        raise ValueError(f"{path}: timestamp on row {int(np.argmax(stamps.isna().to_numpy())) + 1} is missing")
    return values, stamps.to_numpy().astype("datetime64[ns]").astype(np.int64)


def _window_labels(stamps: np.ndarray, windows, where: str) -> np.ndarray:
    labels = np.zeros(len(stamps), np.int8)
    if not isinstance(windows, list):
        raise ValueError(f"{where}: the windows must be a list of [start, end] pairs, got {windows!r}")
    for window in windows:
        if not isinstance(window, (list, tuple)) or len(window) != 2:
            raise ValueError(f"{where}: a window must be [start, end], got {window!r}")
        try:
            start, end = (pd.Timestamp(bound).as_unit("ns").value for bound in window)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{where}: window {window!r} has a bound that is not a date ({error})") from None
        if end < start:
            raise ValueError(f"{where}: window {window!r} ends before it starts")
        labels[(stamps >= start) & (stamps <= end)] = 1
    return labels


def _point_labels(stamps: np.ndarray, points, where: str) -> np.ndarray:
    labels = np.zeros(len(stamps), np.int8)
    if not isinstance(points, list):
        raise ValueError(f"{where}: the labels must be a list of timestamps, got {points!r}")
    for point in points:
        try:
            stamp = pd.Timestamp(point).as_unit("ns").value
        except (ValueError, TypeError) as error:
            raise ValueError(f"{where}: label {point!r} is not a date ({error})") from None
        at = stamps == stamp
        if not at.any():
            raise ValueError(f"{where}: label {point!r} is not a timestamp of the series")
        labels[at] = 1
    return labels


def load_nab(data_dir, labels: str = "windows") -> AnomalyDataset:
    """Load NAB series with their labels from ``data_dir``: ``labels="windows"`` (``combined_windows.json``)
    or ``"points"`` (``combined_labels.json``).

    ``data_dir`` is NAB's root (holding the labels files and one folder per group) or one group's folder
    (e.g. ``NAB/realKnownCause``: the labels file is then read from its parent and only that group's series
    are loaded).  Every CSV of the groups must have an entry in the labels file, and every entry of the groups
    a CSV.  ValueError naming the file on bad input.
    """
    if labels not in LABEL_FILES:
        raise ValueError(f"labels must be one of {', '.join(map(repr, LABEL_FILES))}, got {labels!r}")
    name = LABEL_FILES[labels]
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {root} is not a folder (expected NAB's root or one of its groups)")
    if (root / name).is_file():
        labels_path, groups = root / name, sorted(p for p in root.iterdir() if p.is_dir())
    elif (root.parent / name).is_file():
        labels_path, groups = root.parent / name, [root]
    else:
        raise FileNotFoundError(f"no {name} in {root} or its parent: NAB keeps the labels at its root")
    try:
        entries = json.loads(labels_path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{labels_path}: cannot read it as JSON ({error})") from None
    if not isinstance(entries, dict):
        raise ValueError(f"{labels_path}: expected an object mapping '<folder>/<name>.csv' to its labels")

    names = {group.name for group in groups}
    csvs = {f"{group.name}/{path.name}": path for group in groups for path in sorted(group.glob("*.csv"))}
    selected = sorted(key for key in entries if key.split("/")[0] in names or len(groups) > 1)
    missing = [key for key in selected if key not in csvs]
    if missing:
        raise ValueError(f"{labels_path} names {len(missing)} series not found under {labels_path.parent}: "
                         f"{', '.join(missing[:5])}")
    unlisted = [key for key in csvs if key not in entries]
    if unlisted:
        raise ValueError(f"{csvs[unlisted[0]]}: no entry in {labels_path} (give it [] for a series without "
                         f"anomalies); {len(unlisted)} such file(s)")
    if not selected:
        raise ValueError(f"no series under {root}: expected <folder>/<name>.csv files listed in {labels_path}")

    series = []
    for key in selected:
        path = csvs[key]
        values, stamps = _read_csv(path)
        marks = (_window_labels if labels == "windows" else _point_labels)(stamps, entries[key],
                                                                          f"{labels_path} ({key})")
        try:
            item = make_series(key, values, marks, stamps, labelled=bool(entries[key]))
        except ValueError as error:
            raise ValueError(f"{path}: {str(error).removeprefix(key + ': ')}") from None
        series.append(item)
    return AnomalyDataset(root.name, series, labels)
