"""The paper's raw-difference score (eq. 5) against relative changes, on one dataset: accuracy, time, selection.

Per-level losses differ in scale (the temporal term is larger at finer levels), so raw differences may favour
some resolutions for their scale alone; ``score="relative"`` divides each change by the previous loss.
Prints, per score, the mean over seeds of training time and accuracy, how far the draws were from uniform
(mean total-variation distance of the per-epoch probabilities), and which resolutions were trained.

Usage: python bench/score_comparison.py [--dataset ACSF1] [--seeds 3] [--epochs 20]   (paper's model, logreg)
"""

import argparse
import statistics
import time

import numpy as np

from arl_fast import AdaptiveResolutionLoss, TS2Vec, load_uea
from arl_fast.info import header
from arl_fast.tasks.classification import classification_accuracy


def distance_from_uniform(probabilities):
    p = np.asarray([x for x in probabilities if x > 0])
    return 0.5 * np.abs(p - 1 / len(p)).sum()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ACSF1")
    parser.add_argument("--data-dir")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    data = load_uea(args.dataset, args.data_dir)
    print(header("cpu"))
    print(f"{args.dataset}: {args.seeds} seeds, {args.epochs} epochs, repr 16, depth 2, logreg")
    print(f"{'score':<11}{'time (s)':>9}{'acc.':>7}{'TV from uniform':>17}  resolutions trained (seed 0)")
    for score in ("difference", "relative"):
        times, accuracies, distances, trained = [], [], [], None
        for seed in range(args.seeds):
            loss = AdaptiveResolutionLoss(seed=seed, score=score)
            model = TS2Vec(data.X_train.shape[2], output_dims=16, depth=2, loss=loss, seed=seed, device="cpu")
            start = time.perf_counter()
            model.fit(data.X_train, n_epochs=args.epochs, progress=False)
            times.append(time.perf_counter() - start)
            features = [model.encode(X, "full_series") for X in (data.X_train, data.X_test)]
            accuracies.append(classification_accuracy(features[0], data.y_train, features[1], data.y_test, "logreg"))
            distances += [distance_from_uniform(h["probabilities"]) for h in loss.history[1:]]
            trained = trained or [h["resolution"] for h in loss.history]
        print(f"{score:<11}{statistics.fmean(times):>9.1f}{statistics.fmean(accuracies):>7.3f}"
              f"{statistics.fmean(distances):>17.3f}  {trained}")


if __name__ == "__main__":
    main()
