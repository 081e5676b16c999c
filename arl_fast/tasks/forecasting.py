"""Forecasting by TS2Vec's protocol: causal sliding-window representations, a ridge regression per horizon.

The encoder trains on the training slice of one long series (calendar covariates and targets, see
:func:`arl_fast.data.load_forecast_csv`).  The whole series is then encoded once, every timestamp from its own
past only (``causal=True, sliding_length=1, sliding_padding=200``); the representation at ``t`` is the input of a
ridge regression that predicts the next ``H`` values of every target, one regression per horizon ``H``, its
``alpha`` picked on the validation slice from TS2Vec's grid by RMSE + MAE.  The first 200 training samples,
whose windows reach before the series, are dropped.  Scores are MSE and MAE on the test slice, in the
normalised scale (what TS2Vec reports) and in the file's scale.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split

from ..data import ForecastDataset, load_forecast_csv
from ..data.uea import data_roots
from ..plots import safe_name, save_figure
from . import summarize as summarize_runs, text_table

TASK = "forecasting"
DEFAULT_DATASET = "ETTh1"
METRICS = ("mse", "mae")
PADDING = 200  # past steps each representation sees
RIDGE_ALPHAS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
MAX_RIDGE_SAMPLES = 100_000


# ---------------------------------------------------------------------------------------------- data


def add_arguments(group) -> None:
    """``compare``'s forecasting options."""
    group.add_argument("--target", metavar="COLUMN", action="append",
                       help="forecasting: the column(s) to forecast, repeat for several (default: every numeric "
                            "column, the multivariate setting)")
    group.add_argument("--univariate", action="store_true",
                       help="forecasting: forecast OT alone, TS2Vec's univariate setting (= --target OT)")
    group.add_argument("--horizons", type=_horizon_list, metavar="H,H,...",
                       help="forecasting: horizons to score (default: the dataset's, e.g. 24,48,168,336,720 for "
                            "ETTh1)")


def _horizon_list(text):
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers, got {text!r}")
    return values


def find_csv(dataset: str, data_dir=None) -> Path:
    """The CSV of ``dataset``: a path to a file, or ``NAME.csv`` in ``data_dir``, ``$ARL_FAST_DATA`` or here."""
    if dataset.endswith(".csv") or os.sep in dataset:
        path = Path(dataset).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"forecasting dataset {dataset}: no such file")
        return path
    roots = data_roots(data_dir) + [Path(".")]
    for root in roots:
        for candidate in (root / f"{dataset}.csv", root / dataset / f"{dataset}.csv"):
            if candidate.is_file():
                return candidate
    looked = ", ".join(str(root / f"{dataset}.csv") for root in roots)
    raise FileNotFoundError(f"forecasting dataset {dataset!r} not found: looked for {looked}; pass the folder "
                            "holding it as --data-dir (e.g. --data-dir ../shared/data/ETT)")


def load(dataset: str, data_dir=None, args=None) -> ForecastDataset:
    """The dataset as the protocol uses it; ``args`` may carry ``target``, ``univariate`` and ``horizons``."""
    target = getattr(args, "target", None)
    if getattr(args, "univariate", False):
        if target not in (None, ["OT"]):
            raise ValueError("--univariate forecasts OT alone: give either --univariate or --target")
        target = "OT"
    elif isinstance(target, list) and len(target) == 1:
        target = target[0]
    return load_forecast_csv(find_csv(dataset, data_dir), target, horizons=getattr(args, "horizons", None))


def train_series(data: ForecastDataset) -> np.ndarray:
    """What the encoder trains on: the training slice, covariates and targets."""
    return data.data[:, data.train_slice]


# ---------------------------------------------------------------------------------------------- protocol


def prediction_samples(features: np.ndarray, values: np.ndarray, horizon: int, drop: int = 0):
    """(representation at t -> values at t+1 .. t+H) pairs of one slice: ``features`` (n, T, K) and ``values``
    (n, T, C) give ``(N, K)`` inputs and ``(N, H * C)`` targets (step-major), the first ``drop`` of each series
    left out."""
    length = values.shape[1]
    if length <= horizon:
        raise ValueError(f"horizon {horizon} needs a slice longer than {horizon} steps, got {length}")
    inputs = features[:, : length - horizon]
    targets = np.stack([values[:, 1 + step : length - horizon + 1 + step] for step in range(horizon)], axis=2)
    inputs, targets = inputs[:, drop:], targets[:, drop:]
    return inputs.reshape(-1, inputs.shape[-1]), targets.reshape(-1, horizon * values.shape[2])


def _subsample(x, y, max_samples):
    if len(x) <= max_samples:
        return x, y
    x, _, y, _ = train_test_split(x, y, train_size=max_samples, random_state=0)
    return x, y


def fit_ridge(train_x, train_y, valid_x, valid_y, alphas=RIDGE_ALPHAS, max_samples=MAX_RIDGE_SAMPLES):
    """TS2Vec's ridge: ``alpha`` from ``alphas`` by RMSE + MAE on the validation samples, then refit."""
    train_x, train_y = _subsample(train_x, train_y, max_samples)
    valid_x, valid_y = _subsample(valid_x, valid_y, max_samples)
    scores = []
    for alpha in alphas:
        error = Ridge(alpha=alpha).fit(train_x, train_y).predict(valid_x) - valid_y
        scores.append(np.sqrt((error**2).mean()) + np.abs(error).mean())
    best = alphas[int(np.argmin(scores))]
    return Ridge(alpha=best).fit(train_x, train_y), best


def forecast_scores(features: np.ndarray, data: ForecastDataset, horizons=None, drop: int = PADDING):
    """Fit and score a ridge per horizon on per-timestamp ``features`` (1, T, K) of ``data``'s whole series.

    Returns ``(metrics, predictions)``: metrics holds, per horizon, ``mse`` / ``mae`` (normalised scale),
    ``mse_raw`` / ``mae_raw`` (the file's scale), the chosen ``alpha`` and the fit and predict seconds;
    ``predictions[H]`` is the test forecast, ``(n_test_samples, H, n_targets)`` in the normalised scale."""
    horizons = list(data.horizons if horizons is None else horizons)
    values = data.data[..., data.n_covariates :]
    split = {name: (features[:, part], values[:, part])
             for name, part in (("train", data.train_slice), ("valid", data.valid_slice), ("test", data.test_slice))}
    if split["train"][1].shape[1] - max(horizons) <= drop:
        raise ValueError(f"{data.name}: the training slice ({split['train'][1].shape[1]} steps) leaves no sample "
                         f"for horizon {max(horizons)} once the first {drop} are dropped")
    metrics = {key: {} for key in ("mse", "mae", "mse_raw", "mae_raw", "alpha", "fit_time_s", "predict_time_s")}
    predictions = {}
    n_targets = values.shape[2]
    for horizon in horizons:
        train_x, train_y = prediction_samples(*split["train"], horizon, drop=drop)
        valid_x, valid_y = prediction_samples(*split["valid"], horizon)
        test_x, test_y = prediction_samples(*split["test"], horizon)
        start = time.perf_counter()
        ridge, alpha = fit_ridge(train_x, train_y, valid_x, valid_y)
        fitted = time.perf_counter()
        predicted = ridge.predict(test_x)
        metrics["predict_time_s"][horizon] = time.perf_counter() - fitted
        metrics["fit_time_s"][horizon] = fitted - start
        metrics["alpha"][horizon] = alpha
        predicted, truth = (a.reshape(-1, horizon, n_targets) for a in (predicted, test_y))
        metrics["mse"][horizon] = float(((predicted - truth) ** 2).mean())
        metrics["mae"][horizon] = float(np.abs(predicted - truth).mean())
        raw_predicted, raw_truth = (data.scaler.inverse_transform(a.reshape(-1, n_targets)) for a in (predicted, truth))
        metrics["mse_raw"][horizon] = float(((raw_predicted - raw_truth) ** 2).mean())
        metrics["mae_raw"][horizon] = float(np.abs(raw_predicted - raw_truth).mean())
        predictions[horizon] = predicted
    return metrics, predictions


def encode_series(model, data: ForecastDataset, progress: bool = False) -> np.ndarray:
    """Every timestamp's representation from its 200 past steps: (1, T, output_dims)."""
    return model.encode(data.data, causal=True, sliding_length=1, sliding_padding=PADDING, progress=progress)


def evaluate(model, data: ForecastDataset, args=None):
    """The protocol on a trained TS2Vec ``model``: ``(metrics, artefact)`` as ``arl-fast compare`` keeps them;
    the artefact is what the plots show: the last target over the test slice and the forecasts of every horizon
    from one test point."""
    start = time.perf_counter()
    features = encode_series(model, data, progress=not getattr(args, "quiet", True))
    encode_time = time.perf_counter() - start
    metrics, predictions = forecast_scores(features, data, getattr(args, "horizons", None))
    test = data.data[0, data.test_slice, -1]
    origin = max(0, min(len(test) - 1 - max(predictions), 2 * max(min(predictions), 24)))
    artefact = {"column": data.columns[-1], "test": test.copy(), "origin": origin,
                "forecasts": {h: p[origin, :, -1].copy() for h, p in predictions.items() if origin < len(p)}}
    return {"encode_time_s": encode_time, **metrics}, artefact


def baseline(data: ForecastDataset, args=None):
    """No non-learned row for forecasting."""
    return None


# ---------------------------------------------------------------------------------------------- report


def summarize(runs: list[dict]) -> dict:
    """Per dataset and loss, mean training time and per-horizon MSE / MAE over seeds, with their spread."""
    return summarize_runs(runs, ("mse", "mae", "mse_raw", "mae_raw"))


def format_table(results: dict) -> str:
    """Per dataset, a forecasting paper's table: per loss the training time, its ratio to hierarchical, and MSE /
    MAE per horizon (normalised scale; mean over seeds, +- their standard deviation when there are several)."""
    blocks = []
    for dataset, per_loss in results["summary"].items():
        losses = [loss for loss in results["losses"] if loss in per_loss]
        horizons = list(per_loss[losses[0]]["mse"])
        header = ["loss", "time (s)", "ratio"] + [f"{name}@{h}" for h in horizons for name in ("MSE", "MAE")]
        rows = []
        for loss in losses:
            entry = per_loss[loss]
            ratio = per_loss.get("time_ratio", {}).get(loss)
            row = [loss, _cell(entry["train_time_s"], entry["train_time_s_std"], 1), "-" if ratio is None else f"{ratio:.2f}"]
            for h in horizons:
                row += [_cell(entry["mse"][h], entry["mse_std"][h], 3), _cell(entry["mae"][h], entry["mae_std"][h], 3)]
            rows.append(row)
        seeds = per_loss[losses[0]]["n_seeds"]
        title = f"{dataset} ({results['lengths'][dataset]} training steps, {seeds} seed{'s' if seeds > 1 else ''}; " \
                "MSE / MAE in the normalised scale)"
        blocks.append(title + "\n" + text_table([header, *rows]))
    return "\n\n".join(blocks)


def _cell(mean, std, digits):
    return f"{mean:.{digits}f}" + (f" ±{std:.{digits}f}" if std else "")


def write_plots(out_dir, results: dict, artefacts: dict) -> list[Path]:
    """Per dataset: ``<dataset>_mse.png``, MSE per horizon per loss (mean and spread over seeds), and
    ``<dataset>_forecast.png``, the test series of the last target and each loss's forecasts from one test point
    at a few horizons (lowest seed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset, per_loss in results["summary"].items():
        losses = [loss for loss in results["losses"] if loss in per_loss]
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
        for loss in losses:
            horizons = [int(h) for h in per_loss[loss]["mse"]]
            ax.errorbar(horizons, list(per_loss[loss]["mse"].values()), yerr=list(per_loss[loss]["mse_std"].values()),
                        marker="o", capsize=3, label=loss)
        ax.set(xscale="log", xlabel="horizon (steps)", ylabel="test MSE (normalised)",
               title=f"{dataset}: MSE per horizon")
        ax.legend()
        written.append(save_figure(fig, out_dir / f"{safe_name(dataset)}_mse.png", dpi=110))
        firsts = {}
        for key in sorted(artefacts, key=lambda k: k[2]):
            if key[0] == dataset and key[1] in per_loss:
                firsts.setdefault(key[1], artefacts[key])
        if firsts:
            written.append(save_figure(_forecast_figure(dataset, firsts), out_dir / f"{safe_name(dataset)}_forecast.png",
                                       dpi=110))
    return written


def _forecast_figure(dataset, firsts: dict) -> Figure:
    first = next(iter(firsts.values()))
    test, origin = first["test"], first["origin"]
    horizons = sorted(first["forecasts"])
    shown = horizons[:3] if len(horizons) <= 3 else [horizons[0], horizons[len(horizons) // 2], horizons[-1]]
    fig = Figure(figsize=(9, 2.4 * len(shown)), layout="constrained")
    for row, horizon in enumerate(shown):
        ax = fig.add_subplot(len(shown), 1, row + 1)
        steps = np.arange(max(0, origin - horizon), min(len(test), origin + 1 + horizon))
        ax.plot(steps, test[steps], color="black", linewidth=1, label=f"test {first['column']}")
        for loss, artefact in firsts.items():
            ax.plot(np.arange(origin + 1, origin + 1 + horizon), artefact["forecasts"][horizon], linewidth=1.2,
                    label=loss)
        ax.axvline(origin, color="grey", linestyle=":")
        ax.set(title=f"{dataset}: the next {horizon} steps forecast at test step {origin}", xlabel="test step",
               ylabel="normalised")
        ax.legend(fontsize=8, loc="upper right")
    return fig
