"""Anomaly detection on NAB: every loss side by side, the baseline, and the cpp vs reference pretraining speed.

Runs what ``arl-fast compare --task anomaly`` runs (the task module's load / train_series / evaluate /
baseline / format_table / write_plots), seeds outermost so every loss sees the same machine load, and takes
the benchmark lock (/tmp/arl_bench.lock) around each timed fit only, so a long study
does not hold the shared machine.  ``results.json`` is written after every run, with the command line; a
stopped study resumes with the same command (finished runs are kept).  First, unless ``--speedup-iters 0``,
the hierarchical pretraining of seed 0 for a fixed number of iterations on the cpp and reference backends
(same seed, so the same crops), side by side; then the study.

    python bench/anomaly.py --data-dir ../shared/data/NAB --out bench/results/anomaly/nab \\
        --losses hierarchical adaptive uniform --seeds 2 --iters 100 --speedup-iters 8 --threads 1
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from arl_fast import TS2Vec
from arl_fast.tasks import anomaly

from cpu_loss import cpu_model

LOCK = "/tmp/arl_bench.lock"
_lock = [LOCK]  # the lock file in use (--lock)


@contextmanager
def bench_lock():
    if not _lock[0]:
        yield
        return
    with open(_lock[0], "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def model(args, loss, seed, backend):
    return TS2Vec(1, output_dims=args.repr_dims, hidden_dims=args.hidden_dims, depth=args.depth, loss=loss,
                  backend=backend, batch_size=8, lr=1e-3, max_train_length=3000, device="cpu", seed=seed)


def timed_fit(net, X, iters):
    with bench_lock():
        start = time.perf_counter()
        net.fit(X, n_iters=iters, progress=False)
        return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", default="NAB")
    parser.add_argument("--out", required=True)
    parser.add_argument("--losses", nargs="+", default=["hierarchical", "adaptive", "uniform"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=None, help="iterations per fit (default: TS2Vec's rule)")
    parser.add_argument("--speedup-iters", type=int, default=8)
    parser.add_argument("--repr-dims", type=int, default=320)
    parser.add_argument("--hidden-dims", type=int, default=64)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--delay", type=int, default=anomaly.DEFAULT_DELAY)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lock", default=LOCK, help=f"benchmark lock file, '' for none ({LOCK})")
    parser.add_argument("--table-only", action="store_true",
                        help="only write table.txt from the results.json already in --out (e.g. of a stopped study)")
    args = parser.parse_args(argv)
    _lock[0] = args.lock
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    if args.table_only:
        results = json.loads(path.read_text())
        results["summary"] = anomaly.summarize(results["runs"]) if results["runs"] else {}
        write_table(out, results)
        return 0
    command = "python bench/anomaly.py " + " ".join(argv if argv is not None else sys.argv[1:])

    data = anomaly.load(args.dataset, args.data_dir, args)
    X = anomaly.train_series(data)
    previous = json.loads(path.read_text()) if path.exists() else {}
    runs = [r for r in previous.get("runs", []) if r["loss"] in args.losses and r["seed"] < args.seeds]
    results = {
        "task": anomaly.TASK, "command": command, "cpu": cpu_model(), "threads": torch.get_num_threads(),
        "losses": args.losses, "runs": runs, "baseline": {args.dataset: anomaly.baseline(data, args)},
        "config": {**vars(args), "train_shape": list(X.shape), "backend": "cpp", "device": "cpu"},
        "speedup": previous.get("speedup"),
    }
    print(f"{results['cpu']}, {results['threads']} thread(s); pretraining on {X.shape}", flush=True)
    if args.speedup_iters and not results.get("speedup"):
        times = {}
        for backend in ("cpp", "reference"):
            times[backend] = timed_fit(model(args, "hierarchical", 0, backend), X, args.speedup_iters)
            print(f"hierarchical pretraining, {args.speedup_iters} iterations, {backend}: {times[backend]:.1f} s",
                  flush=True)
        results["speedup"] = {"iters": args.speedup_iters, "loss": "hierarchical", "seed": 0,
                              "time_s": times, "reference_over_cpp": times["reference"] / times["cpp"]}
        path.write_text(json.dumps(results, indent=2))
    artefacts = {}
    for seed in range(args.seeds):
        for loss in args.losses:
            if any(r["seed"] == seed and r["loss"] == loss for r in runs):
                continue
            net = model(args, loss, seed, "cpp")
            train_time = timed_fit(net, X, args.iters)
            metrics, artefact = anomaly.evaluate(net, data, args)  # not timed against the losses: no lock
            artefacts[(args.dataset, loss, seed)] = artefact
            runs.append({"dataset": args.dataset, "loss": loss, "seed": seed, "train_time_s": train_time,
                         "backend": "cpp", "device": "cpu", "epochs": net.n_epochs, "iters": net.n_iters,
                         **metrics})
            results["summary"] = anomaly.summarize(runs)
            path.write_text(json.dumps(results, indent=2))
            print(f"seed {seed} {loss}: train {train_time:.1f} s ({net.n_iters} iters), encode "
                  f"{metrics['encode_time_s']:.1f} s, F1 {metrics['f1']:.3f} P {metrics['precision']:.3f} "
                  f"R {metrics['recall']:.3f}", flush=True)
    results["summary"] = anomaly.summarize(runs)

    path.write_text(json.dumps(results, indent=2))

    write_table(out, results)
    if artefacts:
        anomaly.write_plots(out, results, artefacts)
    return 0


def write_table(out: Path, results: dict) -> None:
    """``table.txt``: the command, the CPU, the task's table and the cpp vs reference line."""
    command = results["command"]
    table = anomaly.format_table(results)
    lines = [f"command: {command}", f"CPU: {results['cpu']}, {results['threads']} thread(s)", "", table]
    if results.get("speedup"):
        s = results["speedup"]
        lines += ["", f"pretraining, hierarchical loss, seed 0, {s['iters']} iterations: "
                      f"cpp {s['time_s']['cpp']:.1f} s, reference {s['time_s']['reference']:.1f} s, "
                      f"reference / cpp = {s['reference_over_cpp']:.2f}"]
    (out / "table.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
