"""Anomaly detection on NAB: every loss side by side, the baseline, and the cpp vs reference pretraining speed.

Runs what ``arl-fast compare --task anomaly`` runs (the task module's load / train_series / evaluate /
baseline / format_table / write_plots), seeds outermost so every loss sees the same machine load, and takes
the benchmark lock (/tmp/arl_bench.lock) around each timed fit only, so a long study does not hold the shared
machine.  Each fit is encoded once and scored against every kind of labels asked for (``--labels``: NAB's
windows, and its points, one per anomaly), one run per kind.

A study stopped part-way resumes: every finished fit's runs land in ``results.json`` at once (written
atomically), each with its loss, seed, iterations, labels, scores, times and the machine that ran it (CPU model
and threads); the same command later, on this machine or another, keeps them and does only the runs missing.
``--commit`` also commits ``results.json`` after every fit.  Quality is pooled over machines; times are
not: the report gives one time table per machine and never compares times across machines.  First, unless
``--speedup-iters 0``, the hierarchical pretraining of seed 0 for a fixed number of iterations on the cpp and
reference backends (same seed, so the same crops), side by side; then the study.

    python bench/anomaly.py --data-dir ../shared/data/NAB --out bench/results/anomaly/nab_600 \\
        --losses hierarchical adaptive uniform --seeds 3 --labels windows points --speedup-iters 8 --threads 1 \\
        --commit
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from arl_fast import TS2Vec
from arl_fast.tasks import anomaly, text_table

from cpu_loss import cpu_model

LOCK = "/tmp/arl_bench.lock"
_lock = [LOCK]  # the lock file in use (--lock)
# What makes two runs the same measurement: a run on file with these equal is not done again.
SETUP = ("dataset", "loss", "seed", "labels", "iters", "delay", "repr_dims", "hidden_dims", "depth")
TIMES = ("train_time_s", "encode_time_s")


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
        log = net.fit(X, n_iters=iters, progress=False)
        return time.perf_counter() - start, log


def write_json(path: Path, results: dict) -> None:
    """Write ``results`` to ``path`` atomically: a stopped process leaves the previous file or the new one."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "w") as handle:
            json.dump(results, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def commit(path: Path, message: str) -> None:
    """Commit ``path`` alone; a busy index (another git command running) is retried for a minute."""
    for _ in range(30):
        added = subprocess.run(["git", "add", str(path)], capture_output=True, text=True)
        done = added.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", str(path)], capture_output=True, text=True)
        if done and done.returncode == 0:
            return
        error = (done or added).stderr
        if "index.lock" not in error:
            break
        time.sleep(2)
    print(f"warning: could not commit {path} ({error.strip()}); the results are on disk", flush=True)


def machine(run: dict) -> str:
    return f"{run['cpu']}, {run['threads']} thread(s)"


def key(run: dict) -> tuple:
    return tuple(run.get(name) for name in SETUP)


def quality_summary(runs: list[dict], dataset: str) -> dict:
    """Per labels kind (``"<dataset> (<labels>)"``) and loss, F1, precision and recall over seeds, pooled
    over machines; the times left out (they do not pool)."""
    summary = {}
    for labels in dict.fromkeys(run["labels"] for run in runs):
        per_loss = anomaly.summarize([run for run in runs if run["labels"] == labels])[dataset]
        per_loss.pop("time_ratio", None)
        summary[f"{dataset} ({labels})"] = {
            loss: {name: value for name, value in entry.items() if not name.startswith(TIMES)}
            for loss, entry in per_loss.items()}
    return summary


def time_summary(runs: list[dict]) -> dict:
    """Per machine and loss, the training and encode times over the fits run there (mean and spread), and
    each loss's training time over hierarchical's on the same machine."""
    fits = {}
    for run in runs:  # the runs of one fit (one per labels kind) share its times
        fits.setdefault((machine(run), run["loss"], run["seed"]), run)
    summary = {}
    for (where, loss, _), run in fits.items():
        summary.setdefault(where, {}).setdefault(loss, []).append(run)
    for where, per_loss in summary.items():
        for loss, loss_runs in per_loss.items():
            entry = {"n_fits": len(loss_runs), "seeds": sorted(run["seed"] for run in loss_runs)}
            for name in TIMES:
                values = [run[name] for run in loss_runs]
                mean = sum(values) / len(values)
                spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
                entry[name], entry[f"{name}_std"] = mean, spread
            per_loss[loss] = entry
        if "hierarchical" in per_loss:
            for entry in per_loss.values():
                entry["time_ratio"] = entry["train_time_s"] / per_loss["hierarchical"]["train_time_s"]
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", default="NAB")
    parser.add_argument("--out", required=True)
    parser.add_argument("--losses", nargs="+", default=["hierarchical", "adaptive", "uniform"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--labels", nargs="+", choices=anomaly.LABEL_KINDS, default=list(anomaly.LABEL_KINDS),
                        help="the labels each fit is scored against (default: both)")
    parser.add_argument("--iters", type=int, default=None, help="iterations per fit (default: TS2Vec's rule)")
    parser.add_argument("--speedup-iters", type=int, default=8)
    parser.add_argument("--repr-dims", type=int, default=320)
    parser.add_argument("--hidden-dims", type=int, default=64)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--delay", type=int, default=anomaly.DEFAULT_DELAY)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lock", default=LOCK, help=f"benchmark lock file, '' for none ({LOCK})")
    parser.add_argument("--commit", action="store_true", help="git commit results.json after every fit")
    parser.add_argument("--table-only", action="store_true",
                        help="only write table.txt from the results.json already in --out (e.g. of a stopped study)")
    args = parser.parse_args(argv)
    _lock[0] = args.lock
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    if args.table_only:
        write_table(out, json.loads(path.read_text()))
        return 0
    command = "python bench/anomaly.py " + " ".join(argv if argv is not None else sys.argv[1:])

    data = {labels: anomaly.load(args.dataset, args.data_dir, argparse.Namespace(delay=args.delay, labels=labels))
            for labels in args.labels}
    X = anomaly.train_series(data[args.labels[0]])  # the labels play no part in the series trained on
    iters = args.iters if args.iters is not None else (200 if X.size <= 100_000 else 600)  # TS2Vec's rule
    cpu, threads = cpu_model(), torch.get_num_threads()
    previous = json.loads(path.read_text()) if path.exists() else {}
    runs = previous.get("runs", [])
    for run in runs:  # runs written before each run named its machine and labels: the file's, and windows
        run.setdefault("cpu", previous.get("cpu"))
        run.setdefault("threads", previous.get("threads"))
        run.setdefault("labels", "windows")
    setup = {"dataset": args.dataset, "iters": iters, "delay": args.delay, "repr_dims": args.repr_dims,
             "hidden_dims": args.hidden_dims, "depth": args.depth}
    results = {
        "task": anomaly.TASK, "command": command, "losses": args.losses, "labels": args.labels, "setup": setup,
        "runs": runs, "baseline": {f"{args.dataset} ({labels})": anomaly.baseline(d, argparse.Namespace(
            delay=args.delay)) for labels, d in data.items()},
        "config": {**vars(args), "train_shape": list(X.shape), "backend": "cpp", "device": "cpu"},
        "speedup": previous.get("speedup"),
    }
    print(f"{cpu}, {threads} thread(s); pretraining on {X.shape}, {iters} iterations per fit", flush=True)
    if args.speedup_iters and not results.get("speedup"):
        times = {}
        for backend in ("cpp", "reference"):
            times[backend] = timed_fit(model(args, "hierarchical", 0, backend), X, args.speedup_iters)[0]
            print(f"hierarchical pretraining, {args.speedup_iters} iterations, {backend}: {times[backend]:.1f} s",
                  flush=True)
        results["speedup"] = {"iters": args.speedup_iters, "loss": "hierarchical", "seed": 0, "cpu": cpu,
                              "threads": threads, "time_s": times,
                              "reference_over_cpp": times["reference"] / times["cpp"]}
        write_json(path, summarised(results))
    done = {key(run) for run in runs}
    artefacts = {}
    for seed in range(args.seeds):
        for loss in args.losses:
            todo = [labels for labels in args.labels
                    if key({**setup, "loss": loss, "seed": seed, "labels": labels}) not in done]
            if not todo:
                continue
            net = model(args, loss, seed, "cpp")
            train_time, log = timed_fit(net, X, iters)
            scored = {s.name: s for labels in todo for s in data[labels].scored}.values()
            scores, encode_time = anomaly.encode_scores(net, list(scored))  # not timed against the losses: no lock
            for labels in todo:
                metrics, artefact = anomaly.scored_metrics(scores, data[labels], args.delay, encode_time)
                if labels == args.labels[0]:
                    artefacts[(args.dataset, loss, seed)] = artefact
                run = {**setup, "loss": loss, "seed": seed, "train_time_s": train_time, "cpu": cpu,
                       "threads": threads, "backend": "cpp", "device": "cpu", "epochs": net.n_epochs,
                       "final_train_loss": log[-1]["loss"] if log else None, **metrics}
                runs.append(run)
                done.add(key(run))
                print(f"seed {seed} {loss} ({labels}): train {train_time:.1f} s ({net.n_iters} iters), encode "
                      f"{encode_time:.1f} s, F1 {metrics['f1']:.3f} P {metrics['precision']:.3f} "
                      f"R {metrics['recall']:.3f}", flush=True)
            write_json(path, summarised(results))
            if args.commit:
                commit(path, f"{out}: {loss} seed {seed}, {iters} iterations, {' and '.join(todo)} labels "
                             f"({cpu}, {threads} thread(s))")

    write_json(path, summarised(results))
    write_table(out, results)
    if artefacts:
        anomaly.write_plots(out, results, artefacts)
    return 0


def summarised(results: dict) -> dict:
    """``results`` with ``summary`` (quality, pooled over machines) and ``times`` (per machine) of the runs of
    its current setup (``setup``, ``losses``, ``labels``; other runs on file stay there, uncounted)."""
    setup = results["setup"]
    runs = [run for run in results["runs"] if all(run.get(name) == value for name, value in setup.items())
            and run["loss"] in results["losses"] and run["labels"] in results["labels"]]
    results["summary"] = quality_summary(runs, setup["dataset"]) if runs else {}
    results["times"] = time_summary(runs)
    return results


def write_table(out: Path, results: dict) -> None:
    """``table.txt``: the command; quality per labels kind, pooled over machines; times, one table per
    machine; the cpp vs reference line."""
    results = summarised(results)
    lines = [f"command: {results['command']}", f"{results['setup']['iters']} iterations per fit", ""]
    if results["summary"]:
        lines += [anomaly.format_table(results, times=False), ""]
    for where, per_loss in results["times"].items():
        rows = [["loss", "fits", "seeds", "train time (s)", "time / hier.", "encode time (s)"]]
        for loss in results["losses"]:
            if loss in per_loss:
                entry = per_loss[loss]
                ratio = entry.get("time_ratio")
                rows.append([loss, str(entry["n_fits"]), " ".join(map(str, entry["seeds"])),
                             f"{entry['train_time_s']:.1f} ± {entry['train_time_s_std']:.1f}",
                             "-" if ratio is None else f"{ratio:.2f}",
                             f"{entry['encode_time_s']:.1f} ± {entry['encode_time_s_std']:.1f}"])
        lines += [f"times on {where} (mean ± std over the fits run there; compare them only with times from this machine)",
                  text_table(rows), ""]
    if results.get("speedup"):
        s = results["speedup"]
        lines += [f"pretraining, hierarchical loss, seed 0, {s['iters']} iterations"
                  f"{' on ' + s['cpu'] if s.get('cpu') else ''}: cpp {s['time_s']['cpp']:.1f} s, reference "
                  f"{s['time_s']['reference']:.1f} s, reference / cpp = {s['reference_over_cpp']:.2f}"]
    (out / "table.txt").write_text("\n".join(lines).rstrip() + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
