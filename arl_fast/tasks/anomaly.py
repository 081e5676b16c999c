"""Anomaly detection by TS2Vec's protocol: masked-last scoring, a trailing-average threshold, point-adjusted F1.

Per series (TS2Vec's ``tasks/anomaly_detection.py`` and its Yahoo / KPI preprocessing):

1. **Preprocessing.**  The first half trains, the second half is scored.  The series is differenced while an
   augmented Dickey-Fuller test on its first half does not reject a unit root at 5% (with 1 lag, or with the
   lag chosen by AIC: both must reject), each difference dropping the first point; then it is scaled by the
   training half's mean and standard deviation.
2. **Pretraining** on every series' training half, stacked as univariate instances NaN-padded to one length
   (series without labelled anomalies included).
3. **Score.**  The whole series is encoded twice with causal sliding windows (``sliding_length=1``,
   ``sliding_padding=200``), once with the window's last timestamp masked (``mask="mask_last"``) and once
   without; a point's score is the L1 distance of its two representations: how much seeing the point
   changes what the encoder makes of its past.  The two passes are one pruned encode that computes what
   they share once (:func:`arl_fast.encoding.encode_pair`).
4. **Normalise** each score by the trailing mean of the 21 scores before it: ``(s_t - m_t) / m_t``.
5. **Threshold** = mean + 4 standard deviations of the training half's normalised scores (its first 22
   dropped); a test point above it is an alarm, and an alarm within ``delay`` points after a kept alarm is
   dropped.
6. **Point adjust with delay**: on the time grid of the test timestamps (step = smallest gap, missing grid
   points labelled 0), a labelled segment counts as found, all of it, when an alarm lies in its first
   ``delay + 1`` points, and as missed otherwise.  F1, precision and recall pool the points of all series.
   NAB labels windows centred on each anomaly (the default), or one point per anomaly (``--labels points``:
   a one-point segment is found only by an alarm on it).

The ADF test is statsmodels' ``adfuller``, as in the original.  Where this differs from the original, on inputs
where the original fails or is undefined: a stretch the test refuses (constant, or too short for its lags)
counts as stationary and at most ``MAX_DIFFERENCES`` differences are taken; a constant training half is not
divided by its zero standard deviation; the threshold is computed over the finite normalised scores (a zero trailing mean gives inf or
NaN); an alarm in the first ``delay`` test points is also dropped when one precedes it (the original never
drops those).

The non-learned baseline, scored by the same steps 4-6: the absolute first difference of the series as
loaded, ``|x_t - x_{t-1}|``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from statsmodels.tools.sm_exceptions import SingularMatrixWarning
from statsmodels.tsa.stattools import adfuller

from ..data.nab import AnomalyDataset, load_nab
from ..encoding import encode_pair
from . import summarize as summarize_runs, text_table

TASK = "anomaly"
DEFAULT_DATASET = "NAB"
METRICS = ("f1", "precision", "recall")

DEFAULT_DELAY = 7  # TS2Vec's on KPI (1-minute steps); Yahoo (hourly) used 3. Most NAB series step 5 minutes.
MA_WINDOW = 21
THRESHOLD_STDS = 4.0
SLIDING_PADDING = 200
ENCODE_BATCH = 256
MAX_DIFFERENCES = 5
BASELINE = "abs_diff"
LABEL_KINDS = ("windows", "points")  # NAB's two label files (see arl_fast.data.nab)


# ---------------------------------------------------------------------------- stationarity (ADF test)


def adf_pvalue(x, maxlag: int | None = None) -> float:
    """p-value of statsmodels' augmented Dickey-Fuller test with a constant, the lag chosen by AIC up to
    ``maxlag`` (``adfuller(x, maxlag)``, as the original calls it); NaN where the test is undefined, i.e. where
    statsmodels refuses the input: a constant series, or one too short for the lags.  The warnings of a
    rank-deficient regression (a series of few distinct values: a singular design, the log of a zero residual)
    are silenced: its p-value is used as the original uses it."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", SingularMatrixWarning)
        try:
            return float(adfuller(np.asarray(x, np.float64), maxlag, result_object=True).pvalue)
        except ValueError:
            return math.nan


def is_stationary(x) -> bool:
    """TS2Vec's rule: the ADF test rejects a unit root at 5% both with 1 lag and with the default lags.
    An undefined test (a constant stretch, or too few points) counts as stationary: differencing cannot help."""
    p_one, p_default = adf_pvalue(x, 1), adf_pvalue(x)
    return not (p_one > 0.05 or p_default > 0.05)  # NaN compares False, as in the original loop


# ---------------------------------------------------------------------------- data


@dataclass
class PreparedSeries:
    """One series after preprocessing: training and test halves aligned with their labels and timestamps."""

    name: str
    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray
    test_labels: np.ndarray
    train_timestamps: np.ndarray | None
    test_timestamps: np.ndarray | None
    raw: np.ndarray  # the loaded values at the same points (train then test), for the baseline
    raw_previous: float  # the loaded value before the first kept point (NaN when there is none)
    differences: int
    labelled: bool


@dataclass
class AnomalyData:
    """What the task trains and scores on: the loaded dataset and every series prepared."""

    dataset: AnomalyDataset
    series: list[PreparedSeries]

    @property
    def scored(self) -> list[PreparedSeries]:
        return [s for s in self.series if s.labelled]


def prepare_series(series) -> PreparedSeries:
    """Split at half, difference until stationary, scale by the training half (step 1 of the protocol)."""
    values = series.values
    half = len(values) // 2
    data, n = values, 0
    while n < MAX_DIFFERENCES and len(data) > half + 8 and not is_stationary(data[:half]):
        data, n = np.diff(data), n + 1
    cut = half - n  # the test half stays the loaded series' second half
    if cut < 2:
        raise ValueError(f"{series.name}: too short to split after {n} differences ({len(values)} points)")
    train, test = data[:cut], data[cut:]
    mean, std = train.mean(), train.std()
    std = std if std > 0 else 1.0
    stamps = series.timestamps
    return PreparedSeries(
        name=series.name,
        train=((train - mean) / std).astype(np.float32), test=((test - mean) / std).astype(np.float32),
        train_labels=series.labels[n:half], test_labels=series.labels[half:],
        train_timestamps=None if stamps is None else stamps[n:half],
        test_timestamps=None if stamps is None else stamps[half:],
        raw=values[n:], raw_previous=float(values[n - 1]) if n else math.nan,
        differences=n, labelled=series.labelled,
    )


def prepare(dataset: AnomalyDataset) -> AnomalyData:
    """Prepare every series of ``dataset`` (see :func:`prepare_series`)."""
    if not dataset.scored:
        raise ValueError(f"{dataset.name}: no series has a labelled anomaly, so nothing can be scored")
    return AnomalyData(dataset, [prepare_series(s) for s in dataset.series])


def pretraining_series(data: AnomalyData) -> np.ndarray:
    """Every series' training half as one univariate instance, NaN-padded at the end: (n, T_max, 1) float32."""
    length = max(len(s.train) for s in data.series)
    out = np.full((len(data.series), length, 1), np.nan, np.float32)
    for i, s in enumerate(data.series):
        out[i, : len(s.train), 0] = s.train
    return out


# ---------------------------------------------------------------------------- scoring


def trailing_mean(x, window: int = MA_WINDOW) -> np.ndarray:
    """``m[t] = mean(x[t - window : t])``: the mean of the ``window`` points before ``t`` (not ``t`` itself);
    NaN for ``t < window`` and wherever those points hold a NaN."""
    x = np.asarray(x, np.float64)
    out = np.full(len(x), np.nan)
    if len(x) > window:
        out[window:] = np.lib.stride_tricks.sliding_window_view(x, window)[:-1].mean(axis=1)
    return out


def normalise(score, window: int = MA_WINDOW) -> np.ndarray:
    """``(s_t - m_t) / m_t`` with ``m`` the trailing mean of :func:`trailing_mean` (inf or NaN where m is 0)."""
    score = np.asarray(score, np.float64)
    mean = trailing_mean(score, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (score - mean) / mean


def threshold(train_normalised, skip: int = MA_WINDOW + 1, stds: float = THRESHOLD_STDS) -> float:
    """Mean + ``stds`` standard deviations of the finite training scores after the first ``skip``;
    inf (no alarm) when none is finite."""
    values = np.asarray(train_normalised, np.float64)[skip:]
    values = values[np.isfinite(values)]
    if not len(values):
        return math.inf
    return float(values.mean() + stds * values.std())


def suppress(alarms, delay: int) -> np.ndarray:
    """Drop every alarm that comes within ``delay`` points after a kept alarm (0/1 int array)."""
    alarms = np.asarray(alarms).astype(np.int8)
    out = np.zeros_like(alarms)
    last = None
    for i in np.flatnonzero(alarms):
        if last is None or i - last > delay:
            out[i] = 1
            last = i
    return out


def point_adjust(pred, label, delay: int) -> np.ndarray:
    """Point adjustment with delay: a labelled segment (a run of 1s) becomes all 1 when ``pred`` has an alarm
    in its first ``delay + 1`` points, all 0 otherwise; points labelled 0 keep their prediction."""
    pred, label = np.asarray(pred).astype(np.int8), np.asarray(label).astype(np.int8)
    if pred.shape != label.shape or pred.ndim != 1:
        raise ValueError(f"pred and label must be 1-D of one shape, got {pred.shape} and {label.shape}")
    out = pred.copy()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], label, [0]))))
    for start, end in zip(edges[::2], edges[1::2]):
        out[start:end] = 1 if pred[start : min(start + delay + 1, end)].any() else 0
    return out


def to_grid(timestamps, *arrays) -> list[np.ndarray]:
    """Place ``arrays`` (one value per timestamp) on the regular grid of step = the smallest gap between the
    sorted timestamps, 0 where the grid has no point.  Timestamps must be distinct (so the step is not 0)."""
    stamps = np.asarray(timestamps, np.int64)
    order = np.argsort(stamps, kind="stable")
    stamps = stamps[order]
    gaps = np.diff(stamps)
    if (gaps <= 0).any():
        raise ValueError("timestamps must be distinct to place points on a time grid (a repeat gives a zero step)")
    if not len(gaps):
        return [np.asarray(a)[order].astype(np.int8) for a in arrays]
    index = (stamps - stamps[0]) // gaps.min()
    grids = []
    for values in arrays:
        grid = np.zeros(int(index[-1]) + 1, np.int8)
        grid[index] = np.asarray(values)[order]
        grids.append(grid)
    return grids


def pooled_scores(preds, labels, timestamps, delay: int) -> dict:
    """F1, precision and recall of point-adjusted ``preds`` against ``labels``, pooled over series (each on its
    time grid when its timestamps are given, else by position), with the pooled counts."""
    tp = fp = fn = 0
    for pred, label, stamps in zip(preds, labels, timestamps):
        if stamps is not None:
            label, pred = to_grid(stamps, label, pred)
        adjusted = point_adjust(pred, label, delay)
        label = np.asarray(label, bool)
        tp += int((adjusted.astype(bool) & label).sum())
        fp += int((adjusted.astype(bool) & ~label).sum())
        fn += int((~adjusted.astype(bool) & label).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, "tp": tp, "fp": fp, "fn": fn}


@dataclass
class SeriesResult:
    """The scoring of one series' test half: its values and labels, normalised scores, threshold, alarms."""

    name: str
    values: np.ndarray
    labels: np.ndarray
    score: np.ndarray
    threshold: float
    alarms: np.ndarray


def detect(score, n_train: int, delay: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Steps 4 and 5 on one series' raw scores (train then test): normalised test scores, threshold, alarms."""
    normalised = normalise(score)
    limit = threshold(normalised[:n_train])
    test = normalised[n_train:]
    with np.errstate(invalid="ignore"):
        alarms = suppress(test > limit, delay)
    return test, limit, alarms


def score_all(scores: dict, data: AnomalyData, delay: int) -> tuple[dict, list[SeriesResult]]:
    """Detect on each scored series' raw scores (name -> train+test array) and pool the point-adjusted scores."""
    results = []
    for s in data.scored:
        test, limit, alarms = detect(scores[s.name], len(s.train), delay)
        results.append(SeriesResult(s.name, s.test, s.test_labels, test.astype(np.float32), limit, alarms))
    metrics = pooled_scores([r.alarms for r in results], [s.test_labels for s in data.scored],
                            [s.test_timestamps for s in data.scored], delay)
    metrics["alarms"] = int(sum(r.alarms.sum() for r in results))
    return metrics, results


def representation_scores(model, values: np.ndarray, batch_size: int = ENCODE_BATCH) -> np.ndarray:
    """Step 3: L1 distance between the masked-last and the unmasked causal sliding representations, both from
    one pruned encode that computes once what the two passes share (:func:`arl_fast.encoding.encode_pair`)."""
    x = np.asarray(values, np.float32).reshape(1, -1, 1)
    masked, seen = encode_pair(model._averaged, x, masks=("mask_last", "all_true"), causal=True, sliding_length=1,
                               sliding_padding=SLIDING_PADDING, batch_size=batch_size, device=model.device)
    return np.abs(seen[0] - masked[0]).sum(axis=1)


def baseline_scores(s: PreparedSeries) -> np.ndarray:
    """The baseline's raw score: ``|x_t - x_{t-1}|`` of the loaded series at the kept points."""
    return np.abs(np.diff(np.concatenate(([s.raw_previous], s.raw))))


# ---------------------------------------------------------------------------- the task interface


def add_arguments(group) -> None:
    """Options of ``arl-fast compare --task anomaly``."""
    group.add_argument("--delay", type=_non_negative_int, default=DEFAULT_DELAY, metavar="N",
                       help=f"alarms within N points after another are dropped, and a labelled segment counts as "
                            f"found when an alarm lies in its first N + 1 points ({DEFAULT_DELAY}: TS2Vec's on KPI)")
    group.add_argument("--labels", choices=LABEL_KINDS, default=LABEL_KINDS[0],
                       help="NAB's labels to score against: the anomaly windows (combined_windows.json, the "
                            "default) or one point per anomaly (combined_labels.json)")


def _non_negative_int(text: str) -> int:
    import argparse

    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def _labels(args) -> str:
    labels = getattr(args, "labels", LABEL_KINDS[0])
    if labels not in LABEL_KINDS:
        raise ValueError(f"--labels must be one of {', '.join(LABEL_KINDS)}, got {labels!r}")
    return labels


def _delay(args) -> int:
    delay = getattr(args, "delay", DEFAULT_DELAY)
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise ValueError(f"--delay must be a non-negative integer, got {delay!r}")
    return delay


def load(dataset: str, data_dir, args=None) -> AnomalyData:
    """The series of ``dataset``: NAB's layout under ``data_dir`` (``data_dir/dataset`` when that folder
    exists, e.g. ``--dataset realKnownCause --data-dir NAB``, else ``data_dir`` itself), with the labels
    ``args.labels`` names (windows by default), prepared."""
    if data_dir is None:
        raise ValueError(f"--task anomaly needs --data-dir: NAB's root (holding combined_windows.json) or one of "
                         f"its groups, for --dataset {dataset}")
    folder = Path(data_dir)
    if dataset and (folder / dataset).is_dir():
        folder = folder / dataset
    return prepare(load_nab(folder, _labels(args)))


def train_series(data: AnomalyData) -> np.ndarray:
    """What TS2Vec pretrains on: every series' training half (see :func:`pretraining_series`)."""
    return pretraining_series(data)


def encode_scores(model, series: list[PreparedSeries]) -> tuple[dict, float]:
    """Step 3 on every series given (train then test): name -> raw scores, and the time the encodes took.
    Labels play no part, so one encode serves every kind of labels."""
    start = time.perf_counter()
    scores = {s.name: representation_scores(model, np.concatenate([s.train, s.test])) for s in series}
    return scores, time.perf_counter() - start


def evaluate(model, data: AnomalyData, args=None) -> tuple[dict, dict]:
    """Score every labelled series with ``model`` (steps 3-6); returns the metrics (F1, precision, recall, the
    pooled counts, alarms, encode time, the labels scored against) and, for the plots, each series'
    :class:`SeriesResult`."""
    delay = _delay(args)
    scores, encode_time = encode_scores(model, data.scored)
    return scored_metrics(scores, data, delay, encode_time)


def scored_metrics(scores: dict, data: AnomalyData, delay: int, encode_time: float) -> tuple[dict, dict]:
    """What :func:`evaluate` returns, from raw scores already encoded (name -> train+test array)."""
    metrics, results = score_all(scores, data, delay)
    metrics["encode_time_s"] = encode_time
    metrics["labels"] = data.dataset.labels
    return metrics, {r.name: r for r in results}


def baseline(data: AnomalyData, args=None) -> dict:
    """The non-learned row: ``|x_t - x_{t-1}|`` scored by the same normalisation, threshold and metric; with
    the data's description (series, scored, repeated rows dropped) for the table."""
    delay = _delay(args)
    metrics, _ = score_all({s.name: baseline_scores(s) for s in data.scored}, data, delay)
    return {
        "name": BASELINE, **metrics, "delay": delay, "labels": data.dataset.labels,
        "data": {"series": len(data.series), "scored": len(data.scored), "unlabelled": data.dataset.n_unlabelled,
                 "dropped_repeats": data.dataset.dropped,
                 "differenced": {s.name: s.differences for s in data.series if s.differences}},
    }


def summarize(runs: list[dict]) -> dict:
    """Per dataset and loss, the mean training time, F1, precision, recall and encode time over seeds, with
    their spread, and each loss's time over hierarchical's."""
    return summarize_runs(runs, (*METRICS, "encode_time_s"))


def _cell(value, spread=None, digits=3) -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return text + (f" ± {spread:.{digits}f}" if spread else "")


def format_table(results: dict, times: bool = True) -> str:
    """Per dataset: per loss the training time, F1, precision and recall (mean ± standard deviation over
    seeds), the time ratio to hierarchical, and the baseline's row; then what the data held.  ``times=False``
    leaves the two time columns out (for runs pooled from machines whose times do not compare)."""
    blocks = []
    for dataset, per_loss in results["summary"].items():
        base = (results.get("baseline") or {}).get(dataset)
        ratios = per_loss.get("time_ratio", {})
        header = ["loss", "seeds", "train time (s)", "F1", "precision", "recall", "time / hier."]
        rows = []
        for loss in results["losses"]:
            if loss not in per_loss:
                continue
            row = per_loss[loss]
            rows.append([loss, str(row.get("n_seeds", "-")), _cell(row.get("train_time_s"), row.get("train_time_s_std"), 1)]
                        + [_cell(row[m], row.get(f"{m}_std")) for m in METRICS]
                        + [_cell(ratios.get(loss), None, 2) if isinstance(ratios, dict) else "-"])
        if base:
            rows.append([f"baseline ({base['name']})", "-", "-"] + [_cell(base[m]) for m in METRICS] + ["-"])
        if not times:  # "train time (s)" and "time / hier." left out
            header, *rows = [row[:2] + row[3:6] for row in (header, *rows)]
        title = f"{dataset}: F1 / precision / recall point-adjusted, pooled over series; mean ± std over seeds"
        if base:
            info = base["data"]
            labels = f"; {base['labels']} labels" if base.get("labels") else ""
            title += (f"{labels}; delay {base['delay']}\n{info['scored']} of {info['series']} series scored "
                      f"({info['unlabelled']} without labelled anomalies train only)")
            if info["dropped_repeats"]:
                title += "; repeated timestamps, first row kept: " + ", ".join(
                    f"{name} {count}" for name, count in info["dropped_repeats"].items())
        blocks.append(title + "\n" + text_table([header, *rows]))
    return "\n\n".join(blocks)


def _plot_series(artefacts: dict, dataset: str) -> str | None:
    """The series the plot shows: the longest one scored (the same for every loss)."""
    names = {name: len(r.score) for (d, _, _), per in artefacts.items() if d == dataset for name, r in per.items()}
    return max(names, key=lambda n: (names[n], n)) if names else None


def write_plots(out_dir, results: dict, artefacts: dict) -> list[Path]:
    """``<dataset>_anomaly.png``: one scored series' test half with its labelled windows, then per loss
    (lowest seed) the normalised score, the threshold and the alarms."""
    from matplotlib.figure import Figure

    from ..plots import safe_name, save_figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset in dict.fromkeys(key[0] for key in artefacts):
        name = _plot_series(artefacts, dataset)
        if name is None:
            continue
        runs = {}
        for (d, loss, seed), per in sorted(artefacts.items(), key=lambda item: item[0][2]):
            if d == dataset and name in per and loss not in runs:
                runs[loss] = per[name]
        first = next(iter(runs.values()))
        fig = Figure(figsize=(11, 2.2 * (len(runs) + 1)), layout="constrained")
        axes = fig.subplots(len(runs) + 1, 1, sharex=True, squeeze=False)[:, 0]
        axes[0].plot(first.values, lw=0.6, color="0.2")
        _shade(axes[0], first.labels)
        axes[0].set_ylabel("series (as scored)")
        for ax, (loss, r) in zip(axes[1:], runs.items()):
            ax.plot(np.clip(r.score, None, max(r.threshold * 4, 1) if np.isfinite(r.threshold) else None),
                    lw=0.6, color="tab:blue", label="normalised score")
            if np.isfinite(r.threshold):
                ax.axhline(r.threshold, color="tab:orange", lw=0.8, label="threshold")
            hits = np.flatnonzero(r.alarms)
            ax.plot(hits, np.full(len(hits), ax.get_ylim()[1]), "v", color="tab:red", ms=4, label="alarm")
            _shade(ax, first.labels)
            ax.set_ylabel(loss)
        axes[min(1, len(axes) - 1)].legend(loc="upper left", fontsize=7, ncol=3)
        axes[-1].set_xlabel("test point")
        axes[0].set_title(f"{dataset}: {name} (test half; labelled windows shaded)")
        written.append(save_figure(fig, out_dir / f"{safe_name(dataset)}_anomaly.png", dpi=110))
    return written


def _shade(ax, labels) -> None:
    labels = np.asarray(labels, np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], labels, [0]))))
    for start, end in zip(edges[::2], edges[1::2]):
        ax.axvspan(start, end - 1, color="tab:red", alpha=0.15, lw=0)
