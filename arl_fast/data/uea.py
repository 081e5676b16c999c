"""UCR/UEA classification datasets in TS2Vec's layout, loaded with aeon.

A dataset ``NAME`` is looked for, in order, in ``data_dir``, in the folder
named by the ``ARL_FAST_DATA`` environment variable, among the datasets aeon
ships, and in aeon's download cache (``AEON_DATA`` or ``~/aeon_data``); each
holds ``NAME/NAME_TRAIN.ts`` and ``NAME/NAME_TEST.ts``, plain or gzipped
(``.ts.gz``).  Failing all of them, aeon downloads it into its cache.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.preprocessing import StandardScaler

DATA_ENV = "ARL_FAST_DATA"


class UEADataset(NamedTuple):
    """A classification dataset: series (n, T, C) scaled per channel, labels 0..n_classes-1."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray  # original label of each encoded class


def to_ts2vec(X) -> np.ndarray:
    """Convert aeon's series (n_cases, n_channels, n_timepoints), or a list of (n_channels, T_i)
    arrays for variable-length data, to TS2Vec's (n, T, C) float32, NaN-padding shorter series at the end."""
    if isinstance(X, np.ndarray):
        if X.ndim != 3:
            raise ValueError(f"X must have shape (n_cases, n_channels, n_timepoints), got {X.shape}")
        return np.ascontiguousarray(X.transpose(0, 2, 1), dtype=np.float32)
    if not isinstance(X, (list, tuple)) or not X:
        raise TypeError(f"X must be a 3-D array or a non-empty list of 2-D arrays, got {type(X).__name__}")
    series = [np.asarray(s, dtype=np.float32) for s in X]
    if any(s.ndim != 2 for s in series) or len({s.shape[0] for s in series}) != 1:
        raise ValueError("X must be a list of (n_channels, n_timepoints) arrays with the same n_channels")
    out = np.full((len(series), max(s.shape[1] for s in series), series[0].shape[0]), np.nan, np.float32)
    for i, s in enumerate(series):
        out[i, : s.shape[1]] = s.T
    return out


def data_roots(data_dir=None) -> list[Path]:
    """The folders a dataset is looked for in by name, in order: ``data_dir`` when given, then the folder
    ``$ARL_FAST_DATA`` names when set.  Every loader starts from these (classification adds aeon's folders,
    forecasting the current one)."""
    roots = [Path(data_dir).expanduser()] if data_dir is not None else []
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]).expanduser())
    return roots


def _aeon_bundled_dir() -> Path:
    import aeon.datasets

    return Path(aeon.datasets.__file__).parent / "data"


def _aeon_cache_dir() -> Path:
    return Path(os.environ.get("AEON_DATA", "~/aeon_data")).expanduser().resolve()


def _split_file(folder: Path, name: str, split: str) -> Path | None:
    for suffix in (".ts", ".ts.gz"):
        path = folder / name / f"{name}_{split}{suffix}"
        if path.is_file():
            return path
    return None


def _find(name: str, roots: list[Path]) -> tuple[Path, Path] | None:
    for root in roots:
        train, test = _split_file(root, name, "TRAIN"), _split_file(root, name, "TEST")
        if train is not None and test is not None:
            return train, test
    return None


def _read_ts(path: Path):
    """Series and labels of one .ts file; a ValueError naming the file when it cannot be parsed."""
    from aeon.datasets import load_from_ts_file

    try:
        if path.suffix != ".gz":
            X, y = load_from_ts_file(str(path))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                plain = Path(tmp) / path.stem
                with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                X, y = load_from_ts_file(str(plain))
    except Exception as error:  # aeon's parser raises many kinds; the user needs the file's name
        raise ValueError(f"could not parse {path} as a .ts file: {type(error).__name__}: {error}") from error
    n_series = len(X)
    if n_series == 0 or (isinstance(X, np.ndarray) and X.ndim != 3):
        raise ValueError(f"could not parse {path} as a .ts file: it holds no series (a missing or empty @data "
                         "section, or a file that is not in the .ts format)")
    if y is None or len(y) != n_series:
        raise ValueError(f"could not parse {path} as a .ts file: {n_series} series but "
                         f"{0 if y is None else len(y)} class labels")
    return X, y


def _download(name: str, cache: Path) -> None:
    """Have aeon download ``name`` into its cache; remove the empty folder a failed download leaves."""
    from aeon.datasets import load_classification
    from aeon.datasets.tsc_datasets import tsc_zenodo

    if name not in tsc_zenodo:
        raise LookupError(f"{name!r} is not in aeon's list of downloadable classification datasets")
    folder = cache / name
    existed = folder.exists()
    try:
        load_classification(name, split="train")
    except Exception:
        if not existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def load_uea(name: str, data_dir=None, download: bool = True) -> UEADataset:
    """Load UCR/UEA dataset ``name`` as TS2Vec does for UEA: series (n, T, C) float32, each channel
    standardised with the train split's mean and deviation, labels encoded as 0..n_classes-1.

    Variable-length series are NaN-padded at the end.  ``download=False``
    never goes online.  Raises FileNotFoundError, naming every place looked
    in, when the dataset cannot be found.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a dataset name such as 'BasicMotions', got {name!r}")
    if not name or os.sep in name or name in (".", ".."):
        raise ValueError(f"name must be a dataset name such as 'BasicMotions', got {name!r}")
    roots = data_roots(data_dir) + [_aeon_bundled_dir(), _aeon_cache_dir()]
    found = _find(name, roots)
    if found is None:
        looked = ", ".join(str(r / name) for r in roots)
        if not download:
            raise FileNotFoundError(f"dataset {name!r} not found: looked in {looked} (download disabled)")
        try:
            _download(name, roots[-1])
        except Exception as error:
            raise FileNotFoundError(
                f"dataset {name!r} not found: looked in {looked}, then aeon's download failed "
                f"({type(error).__name__}: {error}). Put {name}/{name}_TRAIN.ts and {name}_TEST.ts "
                f"(or .ts.gz) in a folder and pass it as data_dir or set {DATA_ENV}."
            ) from error
        found = _find(name, roots[-1:])
        if found is None:
            raise FileNotFoundError(f"aeon reported downloading {name!r} but {roots[-1] / name} lacks its files")
    (X_train, y_train), (X_test, y_test) = (_read_ts(path) for path in found)
    X_train, X_test = to_ts2vec(X_train), to_ts2vec(X_test)
    if X_train.shape[1] != X_test.shape[1]:  # variable-length data: pad both splits to one length
        length = max(X_train.shape[1], X_test.shape[1])
        X_train, X_test = (
            np.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0)), constant_values=np.nan) for x in (X_train, X_test)
        )
    if X_train.shape[2] != X_test.shape[2]:
        raise ValueError(f"{name}: train has {X_train.shape[2]} channels but test has {X_test.shape[2]}")
    scaler = StandardScaler().fit(X_train.reshape(-1, X_train.shape[2]))
    X_train, X_test = (scaler.transform(x.reshape(-1, x.shape[2])).reshape(x.shape).astype(np.float32)
                       for x in (X_train, X_test))
    classes = np.unique(y_train)
    unknown = sorted(set(np.unique(y_test)) - set(classes))
    if unknown:
        raise ValueError(f"{name}: test labels {unknown} never occur in the train split")
    return UEADataset(X_train, np.searchsorted(classes, y_train), X_test, np.searchsorted(classes, y_test), classes)
