"""Training-loop figures on CPU with TS2Vec's default model on ACSF1 (100 series of length 1460).

    python bench/training_scaling.py ddp        # epoch time: 2 gloo ranks x 1 thread vs 1 process x 1 thread
    python bench/training_scaling.py precision  # bf16 vs fp32: training time and SVM accuracy, seeds 0..2

Wrap in ``flock /tmp/arl_bench.lock`` on a shared machine.  Prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from arl_fast import TS2Vec
from arl_fast.data import load_uea
from arl_fast.tasks.classification import classification_accuracy

from arl_fast.info import cpu_model, header

DATASET = "ACSF1"


def epoch_times(epochs: int) -> list[float]:
    """Seconds of each epoch of a seed-0 model, trained in this process (one rank when distributed)."""
    X = load_uea(DATASET, download=False).X_train
    model = TS2Vec(X.shape[2], seed=0, device="cpu", max_train_length=3000)
    times = []
    for epoch in range(1, epochs + 1):
        if dist.is_initialized():
            dist.barrier()
        start = time.perf_counter()
        model.fit(X, n_epochs=epoch, progress=False)
        times.append(time.perf_counter() - start)
    return times


def _rank(rank, port, epochs, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        times = epoch_times(epochs)
        if rank == 0:
            with open(out, "w") as f:
                json.dump(times, f)
    finally:
        dist.destroy_process_group()


def ddp(epochs: int) -> dict:
    """One process for ``epochs`` epochs of 12 steps, then 2 ranks for twice as many epochs of 6 steps: ranks share
    the crop-window stream, which starts as the single process's, so both runs crop the same windows step for step
    and the ratio carries no crop-length noise.  The first 12 steps (warm-up: allocator, oneDNN primitives) are
    left out of both."""
    torch.set_num_threads(1)
    single = epoch_times(epochs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = f"/tmp/arl_ddp_times_{os.getpid()}.json"
    mp.start_processes(_rank, args=(port, 2 * epochs, out), nprocs=2, start_method="spawn")
    with open(out) as f:
        two = json.load(f)
    os.unlink(out)
    steady = [sum(single[1:]) / (epochs - 1), sum(two[2:]) / (2 * epochs - 2)]
    return {"measure": "epoch time, 2 ranks x 1 thread vs 1 process x 1 thread", "dataset": DATASET,
            "cpu": cpu_model(), "header": header("cpu"), "epochs": [epochs, 2 * epochs], "one_process_s": single,
            "two_ranks_s": two,
            "steady_one_process_s": steady[0], "steady_two_ranks_s": steady[1], "ratio": steady[1] / steady[0],
            "load_average_1min": os.getloadavg()[0]}


def precision(seeds: int, epochs: int) -> list[dict]:
    torch.set_num_threads(1)
    data = load_uea(DATASET, download=False)
    rows = []
    for seed in range(seeds):
        for name in ("fp32", "bf16"):
            model = TS2Vec(data.X_train.shape[2], seed=seed, device="cpu", max_train_length=3000, precision=name)
            start = time.perf_counter()
            model.fit(data.X_train, n_epochs=epochs, progress=False)
            seconds = time.perf_counter() - start
            train, test = (model.encode(x, "full_series") for x in (data.X_train, data.X_test))
            accuracy = classification_accuracy(train, data.y_train, test, data.y_test, "svm")
            row = {"measure": "precision", "dataset": DATASET, "cpu": cpu_model(), "header": header("cpu"),
                   "threads": 1, "epochs": epochs,
                   "seed": seed, "precision": name, "train_time_s": seconds, "accuracy": accuracy,
                   "final_loss": model.loss_log[-1]["loss"]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("ddp", "precision"))
    parser.add_argument("--epochs", type=int, default=None, help="ddp: 6 (the 2 ranks train twice as many; the first 12 steps are warm-up); precision: 5")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.what == "ddp":
        print(json.dumps(ddp(args.epochs or 6)), flush=True)
    else:
        precision(args.seeds, args.epochs or 5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
