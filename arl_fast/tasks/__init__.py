"""TS2Vec's evaluation protocols, one module per task, each the same four steps: load the data (with its
splits), train the encoder, encode as the protocol says, score.

- :mod:`.classification`: full-series max-pooled representations, SVM or logistic regression, accuracy.
- :mod:`.forecasting`: causal sliding-window representations, ridge regression per horizon, MSE / MAE.
- :mod:`.anomaly`: masked-last vs unmasked representations, thresholded score, point-adjusted F1.
"""

from __future__ import annotations

import statistics


def summarize(runs: list[dict], metrics) -> dict:
    """Per dataset and loss, the mean over seeds of the training time and of each metric (a number, or a dict
    such as ``{horizon: value}`` averaged key by key), with ``<name>_std`` the seeds' standard deviation (0 for
    one seed) and ``n_seeds``; per dataset, ``time_ratio[loss]`` is the loss's time over the hierarchical
    loss's."""
    summary: dict = {}
    for run in runs:
        summary.setdefault(run["dataset"], {}).setdefault(run["loss"], []).append(run)
    for per_loss in summary.values():
        for loss, loss_runs in per_loss.items():
            entry = {"n_seeds": len(loss_runs)}
            for name in ("train_time_s", *metrics):
                values = [run[name] for run in loss_runs]
                if isinstance(values[0], dict):
                    pairs = {key: _mean_std([v[key] for v in values]) for key in values[0]}
                    entry[name] = {key: mean for key, (mean, _) in pairs.items()}
                    entry[f"{name}_std"] = {key: std for key, (_, std) in pairs.items()}
                else:
                    entry[name], entry[f"{name}_std"] = _mean_std(values)
            per_loss[loss] = entry
        if "hierarchical" in per_loss:
            base = per_loss["hierarchical"]["train_time_s"]
            per_loss["time_ratio"] = {loss: entry["train_time_s"] / base for loss, entry in per_loss.items()}
    return summary


def _mean_std(values) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def text_table(table: list[list[str]]) -> str:
    """Rows of cells as aligned text: the first column left-aligned, the others right, a rule under the header."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
