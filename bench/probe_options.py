"""How well cheaper trend probes reproduce eq. 5's probabilities, on one real adaptive training run.

Trains TS2Vec with the adaptive loss and records, at every step, every level's
loss (no gradient) on the full batch and on its first quarter.  Offline, each
probe option (every k-th step, on a fraction of the batch) gives epoch means,
fed to a fresh ResolutionSelector; its probabilities are compared with those of
the full probe at every step (the paper's measurement) by total variation
distance.  Also compares the paper's raw-difference score with the relative one.

Usage: python bench/probe_options.py [--dataset ACSF1] [--epochs 8] [--seed 0] [--json FILE]
"""

import argparse
import json
import time

import numpy as np
import torch

from arl_fast import AdaptiveResolutionLoss, ResolutionSelector, resolution_losses
from arl_fast.data import load_uea
from arl_fast.info import header
from arl_fast.ts2vec import TS2Vec

OPTIONS = [(1, 1.0), (2, 1.0), (4, 1.0), (1, 0.25), (2, 0.25)]  # (probe_every, probe_fraction)


class RecordingLoss(torch.nn.Module):
    """The adaptive loss (driving training) plus a record of each step's per-level losses."""

    def __init__(self, seed, probe_every):
        super().__init__()
        self.inner = AdaptiveResolutionLoss(seed=seed, probe_every=probe_every)
        self.records = []  # per step: epoch, aligned losses on the full batch and on its first quarter

    def forward(self, z1, z2):
        with torch.no_grad():
            full = resolution_losses(z1.detach(), z2.detach()).flip(0).tolist()
            rows = max(2, z1.shape[0] // 4)
            quarter = resolution_losses(z1.detach()[:rows], z2.detach()[:rows]).flip(0).tolist()
        self.records.append({"epoch": self.inner.epoch, "full": full, "quarter": quarter})
        return self.inner(z1, z2)

    def end_epoch(self):
        return self.inner.end_epoch()


def epoch_means(records, every, key):
    """Per epoch, mean aligned losses over the probed steps (every ``every``-th step of the epoch)."""
    by_epoch = {}
    for record in records:
        by_epoch.setdefault(record["epoch"], []).append(record[key])
    means = []
    for epoch in sorted(by_epoch):
        probed = by_epoch[epoch][::every]
        width = max(len(p) for p in probed)
        sums, counts = np.zeros(width), np.zeros(width)
        for losses in probed:
            sums[: len(losses)] += losses
            counts[: len(losses)] += 1
        means.append(sums / counts)
    return means


def probabilities(means, score="difference"):
    """eq. 5's probabilities after each epoch's measurement, padded to a common width."""
    selector = ResolutionSelector(score=score)
    out = []
    for m in means:
        selector.observe(m[::-1])
        out.append(selector.probabilities())
    width = max(len(p) for p in out)
    return np.array([np.pad(p, (0, width - len(p))) for p in out])


def total_variation(p, q):
    width = max(p.shape[1], q.shape[1])
    p, q = (np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in (p, q))
    return 0.5 * np.abs(p - q).sum(axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ACSF1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the per-step records here")
    args = parser.parse_args()

    data = load_uea(args.dataset)
    loss = RecordingLoss(seed=args.seed, probe_every=4)
    model = TS2Vec(data.X_train.shape[2], loss=loss, seed=args.seed, max_train_length=3000)
    print(header(model.device))
    start = time.perf_counter()
    model.fit(data.X_train, n_epochs=args.epochs, progress=False)
    print(f"{args.dataset}: {args.epochs} epochs, {len(loss.records)} steps, {time.perf_counter() - start:.0f} s "
          f"(training driven by probe_every=4; records add the cost of two extra probes)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"records": loss.records, "history": loss.inner.history}, f)

    # epoch 0 has no trend yet (uniform); compare from the second measurement on
    baseline = probabilities(epoch_means(loss.records, 1, "full"))[1:]
    uniform = (baseline > 0) / (baseline > 0).sum(axis=1, keepdims=True)
    print(f"\nmean TV(full probe every step, uniform over present) = {total_variation(baseline, uniform).mean():.4f}")
    print(f"max probability under the full probe, per epoch: {np.round(baseline.max(axis=1), 3).tolist()}")
    print("\nprobe_every  probe_fraction  mean TV to the full probe  max TV")
    for every, fraction in OPTIONS:
        probs = probabilities(epoch_means(loss.records, every, "full" if fraction == 1.0 else "quarter"))[1:]
        tv = total_variation(probs, baseline)
        print(f"{every:11d}  {fraction:14.2f}  {tv.mean():25.4f}  {tv.max():.4f}")

    relative = probabilities(epoch_means(loss.records, 1, "full"), score="relative")[1:]
    print(f"\nscore='relative' vs 'difference' (full probe): mean TV {total_variation(relative, baseline).mean():.4f}")
    for name, probs in (("difference", baseline), ("relative", relative)):
        print(f"{name:10s} mean probability per resolution (0 = coarsest): {np.round(probs.mean(axis=0), 3).tolist()}")
    means = epoch_means(loss.records, 1, "full")
    print("\nepoch-mean losses per resolution (coarsest first), full probe:")
    for epoch, m in enumerate(means):
        print(f"  epoch {epoch}: {np.round(m, 3).tolist()}")


if __name__ == "__main__":
    main()
