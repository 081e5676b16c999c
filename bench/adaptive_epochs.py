"""What the adaptive loss sees and chooses when epochs are one step long (ETTh1): the resolution trained per epoch.

    python bench/adaptive_epochs.py --iters 200 --other-build ../before --out bench/results/adaptive_etth1

ETTh1's training year is two chunks of 4,320 steps, so with TS2Vec's batch size an epoch is a single step of two
crops.  For each build (this checkout, and ``--other-build`` for the rule before), TS2Vec with the adaptive loss
trains on ETTh1 multivariate in a fresh process (one thread) and hands back the loss's per-epoch history; the
report counts how often the resolution changed and how long it was kept, how many new trends (probes) the
selector saw, how peaked eq. 5's probabilities were and how often each resolution was trained, and plots per epoch
the probabilities (shade) and the resolution trained (dots), one panel per build.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def worker(iters, seed, series_path, out_path):
    """Train in this fresh process (any build: only ``TS2Vec.fit`` and the loss's ``history`` are used)."""
    torch.set_num_threads(1)
    from arl_fast import TS2Vec

    series = np.load(series_path)
    model = TS2Vec(series.shape[2], loss="adaptive", batch_size=8, max_train_length=3000, seed=seed, device="cpu")
    model.fit(series, n_iters=iters, progress=False)
    Path(out_path).write_text(json.dumps({"history": model.loss.history}))


def summary(history):
    """Counts of one history: how long a resolution is kept, how often the trend changed, how peaked eq. 5 was."""
    resolutions = [entry["resolution"] for entry in history]
    changes = sum(a != b for a, b in zip(resolutions, resolutions[1:]))
    trends = sum(a["level_losses"] != b["level_losses"] for a, b in zip(history, history[1:]))
    peaks = [max(e["probabilities"]) for e in history if e["probabilities"] is not None]
    counts = np.bincount(resolutions)
    return {
        "epochs": len(history),
        "resolution changes": changes,
        "epochs a resolution is kept, mean": len(history) / (changes + 1),
        "new trends observed (probes)": trends,
        "mean peak probability of eq. 5": float(np.mean(peaks)),
        "epochs each resolution was trained (r = 0 is length 1)": ", ".join(f"{r}: {c}" for r, c in enumerate(counts)),
    }


def plot(histories, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 2.6 * len(histories)), layout="constrained")
    axes = fig.subplots(len(histories), 1, squeeze=False)[:, 0]
    for ax, (label, history) in zip(axes, histories.items()):
        width = max(len(e["probabilities"] or []) for e in history)
        probs = np.full((width, len(history)), np.nan)
        for epoch, entry in enumerate(history):
            if entry["probabilities"]:
                probs[: len(entry["probabilities"]), epoch] = entry["probabilities"]
        probs[probs == 0.0] = np.nan
        image = ax.imshow(probs, aspect="auto", origin="lower", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        ax.scatter(range(len(history)), [e["resolution"] for e in history], s=6, c="crimson", label="trained")
        ax.set_title(label, fontsize="medium")
        ax.set_ylabel("resolution r")
        ax.set_facecolor("0.9")
    axes[-1].set_xlabel("epoch (one training step each)")
    axes[0].legend(loc="upper right", fontsize="small")
    fig.colorbar(image, ax=list(axes), label="eq. 5 probability", shrink=0.8)
    fig.suptitle("ETTh1 multivariate, adaptive loss: the probability of each resolution per epoch and the one "
                 "trained", fontsize="medium")
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ETT/ETTh1.csv")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--other-build", type=Path, default=None, help="a checkout whose rule is shown beside")
    parser.add_argument("--out", type=Path, default=Path("bench/results/adaptive_etth1"),
                        help="writes OUT.md, OUT.png and the histories, OUT.json")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        iters, seed, series_path, out_path = args.worker
        return worker(int(iters), int(seed), series_path, out_path)

    from arl_fast.data import load_forecast_csv
    from arl_fast.info import header

    torch.set_num_threads(1)  # what the workers train with, so the header says it
    data = load_forecast_csv(args.csv)
    series = data.data[:, data.train_slice].astype(np.float32)
    builds = [("this checkout", None)] + ([(f"before ({args.other_build})", args.other_build)]
                                          if args.other_build else [])
    histories, summaries = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "series.npy", series)
        for label, build in builds:
            env = dict(os.environ)
            if build is not None:
                env["PYTHONPATH"] = str(Path(build).resolve())
            out = Path(tmp) / "history.json"
            subprocess.run([sys.executable, __file__, "--worker", str(args.iters), str(args.seed),
                            str(Path(tmp) / "series.npy"), str(out)], env=env, check=True)
            result = json.loads(out.read_text())
            histories[label] = result["history"]
            summaries[label] = summary(result["history"])
    command = "python bench/adaptive_epochs.py " + " ".join(sys.argv[1:])
    lines = [f"# The adaptive loss on one-step epochs: {command}", "", header("cpu", "auto"), "",
             f"ETTh1 multivariate training slice {series.shape}, TS2Vec's defaults (batch 8: two crops per step, one "
             f"step per epoch), {args.iters} iterations, seed {args.seed}.", "",
             "| | " + " | ".join(summaries) + " |", "|---|" + "---|" * len(summaries)]
    for key in next(iter(summaries.values())):
        cells = [f"{s[key]:.2f}" if isinstance(s[key], float) else str(s[key]) for s in summaries.values()]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", f"![resolutions per epoch]({args.out.name}.png)"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(histories, args.out.with_suffix(".png"))
    args.out.with_suffix(".json").write_text(json.dumps(histories))
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
