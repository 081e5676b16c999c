"""Figures for ``arl-fast compare``: which resolution the adaptive loss trained, per-resolution loss curves
for both losses, and t-SNE of the test embeddings (the paper's fig. 2).

Figures are drawn on ``matplotlib.figure.Figure`` directly (Agg canvas), so
importing this module never changes pyplot's backend.  Resolutions are
indexed as the selector aligns them: 0 is the coarsest (length 1), and
resolution ``r`` has between ``2**r`` and ``2**(r + 1) - 1`` timestamps.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def write_compare_plots(out_dir, results, histories, embeddings) -> list[Path]:
    """Write the PNG figures of a ``compare`` run into ``out_dir`` and return their paths.

    ``results`` is the ``results.json`` dict (its ``"lengths"`` give the
    datasets' lengths); ``histories`` maps ``(dataset, loss, seed)`` to
    ``{"log": model.loss_log, "adaptive": AdaptiveResolutionLoss.history or None}`` (``"loss_log"`` is
    accepted for ``"log"``);
    ``embeddings`` maps ``(dataset, loss)`` to ``(test features (n, K), labels (n,))``.
    Per dataset: ``<dataset>_resolutions.png`` (adaptive runs),
    ``<dataset>_level_losses.png`` and ``<dataset>_tsne.png`` (when at least
    3 test series were embedded).  Curves and heat maps show each loss's
    lowest seed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lengths = results.get("lengths", {})
    datasets = list(dict.fromkeys([key[0] for key in histories] + [key[0] for key in embeddings]))
    written = []
    for dataset in datasets:
        title = f"{dataset} (length {lengths[dataset]})" if dataset in lengths else dataset
        first_runs = _first_seed_runs(histories, dataset)
        stem = out_dir / safe_name(dataset)
        adaptive = first_runs.get("adaptive", {}).get("adaptive")
        if adaptive:
            written.append(save_figure(_resolution_heatmap(adaptive, title), f"{stem}_resolutions.png"))
        curves = {loss: _aligned_level_losses(first_runs[loss]) for loss in _ordered(first_runs)}
        curves = {loss: curve for loss, curve in curves.items() if curve}
        if curves:
            written.append(save_figure(_level_loss_curves(curves, title), f"{stem}_level_losses.png"))
        points = {loss: emb for (name, loss), emb in embeddings.items() if name == dataset and len(emb[1]) >= 3}
        if points:
            written.append(save_figure(_tsne_panels(points, title), f"{stem}_tsne.png"))
    return written


def _ordered(losses) -> list:
    """Hierarchical first, then adaptive, then any other loss by name: the same panel order in every figure."""
    return sorted(losses, key=lambda loss: (loss != "hierarchical", loss != "adaptive", loss))


def safe_name(name) -> str:
    """``name`` as a file name: anything but word characters, dots and dashes becomes ``_``."""
    return re.sub(r"[^\w.-]+", "_", str(name))


def save_figure(fig, path, dpi: int = 120) -> Path:
    """Render ``fig`` on an Agg canvas (pyplot untouched) and write it to ``path``."""
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return Path(path)


def _first_seed_runs(histories, dataset) -> dict:
    """Per loss, the history of its lowest seed on ``dataset``."""
    runs = {}
    for (name, loss, seed), history in sorted(histories.items(), key=lambda item: (item[0][1], item[0][2])):
        if name == dataset and loss not in runs:
            runs[loss] = history
    return runs


def _aligned_level_losses(history) -> list[list]:
    """Per epoch, the per-resolution losses coarsest first (None where not measured)."""
    adaptive = history.get("adaptive")
    if adaptive:  # the uniform and finest baselines measure no level losses: no curve
        return [entry["level_losses"] for entry in adaptive if entry["level_losses"]]
    log = history.get("log") or history.get("loss_log") or []  # TS2Vec.loss_log, under either name
    return [entry["level_losses"][::-1] for entry in log if entry.get("level_losses")]


def _padded(rows) -> np.ndarray:
    """Ragged rows (None for missing) as a float array, NaN-padded on the right."""
    width = max(len(row) for row in rows)
    out = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        out[i, : len(row)] = [np.nan if v is None else v for v in row]
    return out


def _resolution_heatmap(adaptive_history, title) -> Figure:
    """Probabilities of each resolution per epoch (eq. 5), the resolution drawn and trained marked."""
    probs = _padded([entry["probabilities"] for entry in adaptive_history])
    probs[probs == 0.0] = np.nan  # eq. 5 gives absent resolutions exactly 0, present ones never
    epochs = [entry["epoch"] for entry in adaptive_history]
    chosen = [entry["resolution"] for entry in adaptive_history]
    fig = Figure(figsize=(min(14.0, max(6.5, 0.12 * len(epochs) + 3)), 4.2), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(probs.T), origin="lower", aspect="auto", cmap="viridis", interpolation="nearest",
        extent=(epochs[0] - 0.5, epochs[-1] + 0.5, -0.5, probs.shape[1] - 0.5), vmin=0.0,
    )
    ax.set_facecolor("0.85")  # resolutions absent that epoch
    ax.scatter(epochs, chosen, marker="o", s=18 if len(epochs) <= 80 else 6, facecolors="none", edgecolors="red",
               linewidths=1.2, label="trained")
    ax.set_xlabel("epoch")
    ax.set_ylabel("resolution r (2^r to 2^(r+1)-1 steps)")
    ax.set_yticks(range(probs.shape[1]))
    ax.set_title(f"{title}\nadaptive loss: probability of each resolution per epoch (grey: absent)")
    ax.legend(loc="upper right", fontsize="small", framealpha=0.8)
    fig.colorbar(image, ax=ax, label="probability")
    return fig


def _level_loss_curves(curves, title) -> Figure:
    """One panel per loss: each resolution's epoch-mean loss over the epochs, on a shared y axis."""
    fig = Figure(figsize=(5.5 * len(curves) + 1.5, 4.2), layout="constrained")
    axes = fig.subplots(1, len(curves), sharey=True, squeeze=False)[0]
    width = max(_padded(rows).shape[1] for rows in curves.values())
    colours = [(0.0, 0.0, 0.0, 1.0)] if width == 1 else [
        tuple(c) for c in _colormap("viridis")(np.linspace(0, 0.95, width))
    ]
    for ax, (loss, rows) in zip(axes, curves.items()):
        values = _padded(rows)
        for r in range(values.shape[1]):
            ax.plot(np.arange(len(values)), values[:, r], color=colours[r], label=f"r={r}")
        ax.set_title(f"{loss} loss")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("epoch-mean loss")
    axes[-1].legend(title="resolution", fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{title}: per-resolution losses (r = 0 is length 1)")
    return fig


def _tsne_panels(points, title) -> Figure:
    """t-SNE of each loss's test embeddings side by side, coloured by class."""
    from sklearn.manifold import TSNE

    order = _ordered(points)
    fig = Figure(figsize=(4.8 * len(order) + 1.2, 4.6), layout="constrained")
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    classes = np.unique(np.concatenate([np.asarray(points[loss][1]) for loss in order]))
    cmap = _colormap("tab10" if len(classes) <= 10 else "tab20")
    for ax, loss in zip(axes, order):
        features, labels = np.asarray(points[loss][0], dtype=np.float64), np.asarray(points[loss][1])
        perplexity = min(30.0, (len(features) - 1) / 3)
        # exact gradients are quicker than Barnes-Hut's approximation at test-set sizes
        method = "exact" if len(features) <= 2000 else "barnes_hut"
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", method=method, random_state=0)
        xy = tsne.fit_transform(features)
        for i, label in enumerate(classes):
            mask = labels == label
            ax.scatter(xy[mask, 0], xy[mask, 1], s=12, color=cmap(i % cmap.N), label=str(label))
        ax.set_title(f"{loss} loss")
        ax.set_xticks([])
        ax.set_yticks([])
    if len(classes) <= 20:
        axes[-1].legend(title="class", fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{title}: t-SNE of test embeddings")
    return fig


def _colormap(name):
    from matplotlib import colormaps

    return colormaps[name]
