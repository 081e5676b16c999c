"""Does the selection matter?  Ablation of the adaptive loss's choice of resolution, with confidence intervals.

Trains TS2Vec with the hierarchical loss and each selection variant of the adaptive loss (``adaptive``: eq. 5-6;
``adaptive@0.1``: eq. 5 at temperature 0.1; ``uniform``: one resolution per epoch drawn uniformly, no probes;
``finest``: level 0 only) for several seeds, in two settings:

- ``paper``: the paper's model (representation 16, depth 2) and logistic regression, on ACSF1 and the paper's
  four offline UEA datasets (AtrialFibrillation, Cricket, StandWalkJump, MotorImagery; MotorImagery needs the
  ``cpp`` backend to fit: about 1.2 s a hierarchical step with it on 2 cores, ten times more with the reference);
- ``ts2vec``: TS2Vec's default model (representation 320, depth 10) and SVM, on ACSF1 and Cricket.

Each run writes ``OUT/runs/SETTING/DATASET/VARIANT/seed_N.json`` atomically; a run whose file exists is skipped,
so the command resumes where it stopped.  The settings run one after the other, seeds outermost within each, so
all variants see the same machine load when it drifts.  ``--jobs`` runs train side by side (default 2, one torch
thread each on 2 cores: more runs an hour than one 2-thread run); runs start in plan order, so the runs side by
side are neighbours, and each run file records the threads and runs side by side it was timed with.  After the
runs, ``OUT/REPORT.md`` and one figure per setting are built from every run file present (``--report`` builds
them without training).

Usage (the full study):

    flock /tmp/arl_bench.lock python bench/ablation.py

On the 2-core development machine (AMD EPYC, cpp backend, two 1-thread runs side by side) the paper setting took
about 45 minutes for 5 seeds of its five datasets (MotorImagery 50-90 s a run), and TS2Vec's setting about
12 minutes a seed on ACSF1 (240-390 s a run) and 10 on Cricket (200-300 s): about 2 hours for 5 seeds.
Timings suffer from other work on the machine (the report gives the load average): run the study on an otherwise
idle machine.

    python bench/ablation.py --report                       # rebuild the report from the run files
    python bench/ablation.py --only Cricket --settings paper --seeds 2 --out /tmp/ablation   # a subset
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "ablation"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "UEA"
COMMAND = "flock /tmp/arl_bench.lock python bench/ablation.py"

VARIANTS = ["hierarchical", "adaptive", "adaptive@0.1", "uniform", "finest"]
SEEDS = 5

# Per setting: the model, the classifier and, per dataset, the training budget (the same for every variant).
# Budgets are those of bench/table1_cpu.sh (TS2Vec's 200 iterations where an epoch is one iteration).
SETTINGS = {
    "paper": {
        "model": {"output_dims": 16, "hidden_dims": 64, "depth": 2},
        "classifier": "logreg",
        "budgets": {
            "ACSF1": {"n_epochs": 20},              # 100 series of 1460: 12 iterations an epoch
            "AtrialFibrillation": {"n_iters": 200},  # 15 series of 640: 1 iteration an epoch
            "Cricket": {"n_epochs": 20},             # 108 series of 1197: 13 iterations an epoch
            "StandWalkJump": {"n_iters": 100},       # 12 series of 2500: 1 iteration an epoch
            "MotorImagery": {"n_iters": 200},        # 278 series of 3000 x 64 channels: 35 iterations an epoch
        },
    },
    "ts2vec": {
        "model": {"output_dims": 320, "hidden_dims": 64, "depth": 10},
        "classifier": "svm",
        "budgets": {"ACSF1": {"n_epochs": 20}, "Cricket": {"n_epochs": 20}},
    },
}
COMMON = {"batch_size": 8, "lr": 1e-3, "max_train_length": 3000, "temporal_unit": 0}


def plan(settings, only, variants, seeds):
    """The runs to make, as (seed, setting, dataset, variant) tuples: setting by setting (one is complete before
    the next starts), seeds outermost within a setting."""
    runs = []
    for setting in settings:
        for seed in range(seeds):
            for dataset in SETTINGS[setting]["budgets"]:
                if only and dataset not in only:
                    continue
                runs += [(seed, setting, dataset, variant) for variant in variants]
    return runs


def run_path(out, setting, dataset, variant, seed) -> Path:
    return Path(out) / "runs" / setting / dataset / variant.replace("@", "_at_") / f"seed_{seed}.json"


def write_atomically(path: Path, data: dict) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it, so no half-written run file exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as file:
        json.dump(data, file, indent=1)
        temporary = file.name
    os.replace(temporary, path)


def run_config(setting, dataset, budget_override, backend, threads, jobs) -> dict:
    """What a run's result and timing depend on besides seed and variant (the resolved loss backend, torch threads
    per run and runs side by side, so runs timed differently never mix); a resumed study must match it."""
    spec = SETTINGS[setting]
    return {
        "setting": setting, "model": spec["model"], "classifier": spec["classifier"], **COMMON,
        "budget": budget_override or spec["budgets"][dataset], "backend": backend,
        "torch_threads": threads, "parallel_runs": jobs,
    }


def train_one(data, setting, dataset, variant, seed, config, threads, backend_requested="auto") -> dict:
    """Train and evaluate one model; return its run record."""
    import torch

    from arl_fast import TS2Vec
    from arl_fast.backends import kernel_variant
    from arl_fast.info import cpu_model
    from arl_fast.tasks.classification import classification_accuracy

    device = torch.device("cpu")
    model = TS2Vec(
        data.X_train.shape[2], **config["model"], loss=variant, temporal_unit=config["temporal_unit"],
        backend=config["backend"], lr=config["lr"], batch_size=config["batch_size"],
        max_train_length=config["max_train_length"], device=device, seed=seed,
    )
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    model.fit(data.X_train, **config["budget"], progress=False)
    train_time = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    features = [model.encode(X, "full_series") for X in (data.X_train, data.X_test)]
    accuracy = classification_accuracy(features[0], data.y_train, features[1], data.y_test, config["classifier"])
    history = getattr(model.loss, "history", None)
    return {
        "setting": setting, "dataset": dataset, "variant": variant, "seed": seed,
        "accuracy": float(accuracy), "train_time_s": train_time,
        "epochs": model.n_epochs, "iters": model.n_iters, "length": int(data.X_train.shape[1]),
        "config": config, "backend": config["backend"], "backend_requested": backend_requested,
        "kernel_variant": kernel_variant(config["backend"], device),
        "cpu": cpu_model(), "torch_threads": threads, "load_average_1min": [load_before, load_after],
        "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
        "command": shlex.join(sys.argv), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loss_log": [{"epoch": e["epoch"], "loss": e["loss"]} for e in model.loss_log],
        "adaptive_history": history,
    }


def warm_up(data, config) -> None:
    """One untimed training step, so one-time costs (lazy imports, thread pools) fall on no timed run."""
    from arl_fast import TS2Vec

    model = TS2Vec(data.X_train.shape[2], **config["model"], backend=config["backend"], device="cpu",
                   max_train_length=config["max_train_length"], seed=0)
    model.fit(data.X_train[: config["batch_size"]], n_iters=1, progress=False)


_worker_data: dict = {}  # per worker process: the dataset in use, and whether it has warmed up


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_and_save(path, data_dir, seed, setting, dataset, variant, config, backend_requested) -> dict:
    """One run in this process: load its dataset (one in memory at a time), warm up once, train, write the run
    file atomically; return the record."""
    import torch

    from arl_fast import load_uea

    if _worker_data.get("name") != dataset:
        _worker_data.update(name=dataset, data=load_uea(dataset, data_dir))
    if not _worker_data.get("warm"):
        warm_up(_worker_data["data"], config)
        _worker_data["warm"] = True
    record = train_one(_worker_data["data"], setting, dataset, variant, seed, config, torch.get_num_threads(),
                       backend_requested)
    write_atomically(Path(path), record)
    return record


def run_study(args) -> None:
    """Train every planned run that has no run file, ``args.jobs`` at a time, each with ``threads`` torch threads."""
    import torch

    from arl_fast.backends import resolve_backend
    from arl_fast.info import header

    backend = resolve_backend(args.backend, torch.device("cpu"))  # "auto": the fastest CPU backend built here
    print(header("cpu", args.backend), flush=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    override = {"n_epochs": args.epochs} if args.epochs else {"n_iters": args.iters} if args.iters else None
    plan_all = plan(args.settings, args.only, args.variants, args.seeds)
    todo = []
    for index, (seed, setting, dataset, variant) in enumerate(plan_all, 1):
        path = run_path(args.out, setting, dataset, variant, seed)
        config = run_config(setting, dataset, override, backend, threads, args.jobs)
        if path.exists():
            saved = json.loads(path.read_text())["config"]
            if saved != config:
                raise SystemExit(f"{path} was made with another configuration ({saved}, now {config}): "
                                 "use another --out or remove it")
            continue
        todo.append((index, (str(path), args.data_dir, seed, setting, dataset, variant, config, args.backend)))

    def report(index, run, record):
        _, _, seed, setting, dataset, variant, _, _ = run
        print(f"[{index}/{len(plan_all)}] {setting} {dataset} {variant} seed {seed}: "
              f"accuracy {record['accuracy']:.3f}, {record['train_time_s']:.1f} s", flush=True)

    if args.jobs == 1:
        _init_worker(threads)
        for index, run in todo:
            report(index, run, _train_and_save(*run))
        return
    # Runs start in plan order, so the runs side by side are neighbours (same seed, mostly the same dataset).
    # Leaving the block on Ctrl-C or a failed run terminates the workers: nothing trains on unseen.  After the
    # last run they are joined instead, so each exits cleanly (a killed one leaks joblib's semaphores).
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(args.jobs, _init_worker, (threads,)) as pool:
        for index, run, record in pool.imap_unordered(_train_indexed, todo):
            report(index, run, record)
        pool.close()
        pool.join()


def _train_indexed(item):
    index, run = item
    return index, run, _train_and_save(*run)


# ---------------------------------------------------------------- report


def load_runs(out) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "runs").glob("*/*/*/seed_*.json"))]


def t_interval(values, confidence=0.95):
    """Mean and two-sided t confidence interval of ``values`` (None for the interval with fewer than 2)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, (mean - half, mean + half)


def paired(runs_a, runs_b, key="accuracy"):
    """Per-seed differences a - b over the seeds both have, with their mean and 95% t-interval."""
    b_by_seed = {r["seed"]: r[key] for r in runs_b}
    diffs = [r[key] - b_by_seed[r["seed"]] for r in sorted(runs_a, key=lambda r: r["seed"]) if r["seed"] in b_by_seed]
    if not diffs:
        return None
    mean, interval = t_interval(diffs)
    return {"n": len(diffs), "mean": mean, "ci": interval}


def _mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def _fmt_ms(values, digits):
    mean, std = _mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if not math.isnan(std) else f"{mean:.{digits}f}"


def _fmt_diff(result, digits=3):
    def signed(x):
        return f"{round(x, digits) + 0.0:+.{digits}f}"  # + 0.0: no "-0.000"

    if result is None:
        return "-"
    if result["ci"] is None:
        return f"{signed(result['mean'])} (n=1, no interval)"
    lo, hi = result["ci"]
    return f"{signed(result['mean'])} [{signed(lo)}, {signed(hi)}]"


def summarise(runs, settings, variants):
    """Per (setting, dataset): per variant its runs, and the comparisons the report states."""
    table = {}
    for run in runs:
        if run["setting"] in settings and run["variant"] in variants:
            table.setdefault((run["setting"], run["dataset"]), {}).setdefault(run["variant"], []).append(run)
    order = {(s, d): i for i, (s, d) in enumerate((s, d) for s in SETTINGS for d in SETTINGS[s]["budgets"])}
    return dict(sorted(table.items(), key=lambda item: order.get(item[0], len(order))))


def build_report(out, settings=tuple(SETTINGS), variants=tuple(VARIANTS), seeds=SEEDS, only=None) -> str:
    """Write OUT/REPORT.md and OUT/ablation_SETTING.png from the run files present; return the Markdown."""
    out = Path(out)
    runs = load_runs(out)
    groups = summarise(runs, settings, variants)
    expected = plan(settings, only, variants, seeds)
    present = {(r["seed"], r["setting"], r["dataset"], r["variant"]) for r in runs}
    missing = [run for run in expected if run not in present]

    lines = ["# Does the selection matter? Ablation of the adaptive loss", "",
             "Produced by (the full study; every number below comes from the run files under `runs/`):", "",
             f"    {COMMAND}", ""]
    commands = sorted({r["command"] for r in runs})
    if commands:
        lines += ["Commands recorded in the run files: " + "; ".join(f"`{c}`" for c in commands) + "."]
    machines = sorted({(r["cpu"], r["torch_threads"], r["config"].get("parallel_runs", 1), r["backend"], r["torch"])
                       for r in runs})
    for cpu, threads, jobs, backend, torch_version in machines:
        side_by_side = f", {jobs} runs side by side" if jobs > 1 else ""
        plural = "s" if threads != 1 else ""
        lines.append(f"Machine: {cpu}, {threads} torch thread{plural} per run{side_by_side}, backend `{backend}`, "
                     f"torch {torch_version}.")
    loads = [x for r in runs for x in r.get("load_average_1min", [])]
    if loads:  # timing noise: load above the core count means the runs shared the CPUs with other work
        cores = max(r.get("cores") or 0 for r in runs)
        lines.append(f"1-minute load average at the start and end of the runs: median {np.median(loads):.1f}, "
                     f"max {max(loads):.1f} ({cores} cores).")
    lines += ["", "Variants: `hierarchical` (TS2Vec's loss, every level every step); `adaptive` (eq. 5-6, one "
              "level per epoch, all levels probed every 4th step); `adaptive@0.1` (eq. 5 at temperature 0.1); "
              "`uniform` (one level per epoch drawn uniformly, no probes); `finest` (level 0 only). "
              "Accuracy and training time: mean ± std over seeds. Time ratio: mean time / hierarchical's mean time. "
              "Δ acc.: paired per-seed accuracy difference to hierarchical (same seed: same initial weights, crops "
              "and masks up to the loss), mean and 95% t-interval over seeds.", ""]

    verdicts_selection, verdicts_cheap = [], []
    for setting in settings:
        spec = SETTINGS[setting]
        model = spec["model"]
        keys = [key for key in groups if key[0] == setting]
        if not keys:
            continue
        lines += [f"## Setting `{setting}`: representation {model['output_dims']}, depth {model['depth']}, "
                  f"{spec['classifier']}", "", f"![accuracy vs training time](ablation_{setting}.png)", ""]
        for key in keys:
            per_variant = groups[key]
            dataset = key[1]
            sample = next(iter(per_variant.values()))[0]
            budget = ", ".join(f"{k.removeprefix('n_')} {v}" for k, v in sample["config"]["budget"].items())
            lines += [f"### {dataset} (length {sample['length']}, {budget})", "",
                      "| variant | seeds | accuracy | training time (s) | time ratio | Δ acc. vs hierarchical [95% CI] |",
                      "| --- | --- | --- | --- | --- | --- |"]
            hier = per_variant.get("hierarchical", [])
            hier_time = float(np.mean([r["train_time_s"] for r in hier])) if hier else None
            for variant in variants:
                vr = per_variant.get(variant)
                if not vr:
                    continue
                time_mean = float(np.mean([r["train_time_s"] for r in vr]))
                ratio = f"{time_mean / hier_time:.2f}" if hier_time else "-"
                diff = paired(vr, hier) if hier and variant != "hierarchical" else None
                lines.append(f"| {variant} | {len(vr)} | {_fmt_ms([r['accuracy'] for r in vr], 3)} | "
                             f"{_fmt_ms([r['train_time_s'] for r in vr], 1)} | {ratio} | {_fmt_diff(diff)} |")
                if diff and hier_time and time_mean / hier_time <= 0.5 and diff["ci"] and diff["ci"][1] >= 0:
                    verdicts_cheap.append(f"{setting}/{dataset}: `{variant}` at {time_mean / hier_time:.2f} of "
                                          f"hierarchical's time, Δ acc. {_fmt_diff(diff)}")
            if "adaptive" in per_variant and "uniform" in per_variant:
                diff = paired(per_variant["adaptive"], per_variant["uniform"])
                cost = paired(per_variant["adaptive"], per_variant["uniform"], "train_time_s")
                uniform_time = float(np.mean([r["train_time_s"] for r in per_variant["uniform"]]))
                if diff["ci"] is None:
                    verdict = "one seed only: no interval"
                elif diff["ci"][0] > 0:
                    verdict = "eq. 5 better"
                elif diff["ci"][1] < 0:
                    verdict = "uniform better"
                else:
                    verdict = "no difference detected (interval contains 0)"
                verdicts_selection.append((setting, dataset, verdict,
                    f"| {setting} | {dataset} | {diff['n']} | {_fmt_diff(diff)} | "
                    f"{cost['mean']:+.1f} s ({cost['mean'] / uniform_time:+.0%}) | {verdict} |"))
            lines.append("")

    lines += ["## Answers", "", "### Does eq. 5's selection beat uniform selection at equal cost?", "",
              "Paired per-seed difference `adaptive - uniform` (both train one level per epoch; adaptive also "
              "pays for its probes, shown as its extra time over uniform):", ""]
    if verdicts_selection:
        lines += ["| setting | dataset | seeds | Δ acc. adaptive − uniform [95% CI] | extra time of adaptive | "
                  "verdict |", "| --- | --- | --- | --- | --- | --- |", *(row for *_, row in verdicts_selection)]
        for label, verdict in (("eq. 5 beats uniform (interval above 0)", "eq. 5 better"),
                               ("uniform beats eq. 5 (interval below 0)", "uniform better")):
            where = [f"{s}/{d}" for s, d, v, _ in verdicts_selection if v == verdict]
            lines += ["", f"{label} on: {', '.join(where) or 'no dataset'}."]
    else:
        lines.append("No dataset has both `adaptive` and `uniform` runs yet.")
    lines += ["", "### Does any variant keep hierarchical accuracy at <= 0.5 of its time?", "",
              "Criterion: paired Δ acc. vs hierarchical has a 95% interval containing 0 or above it, and the mean "
              "training time is at most half of hierarchical's. A wide interval that contains 0 is weak evidence "
              "of equal accuracy: read its width.", ""]
    lines += [f"- {v}" for v in verdicts_cheap] or ["- none"]
    lines += ["", "## Missing runs", ""]
    if missing:
        lines.append(f"{len(missing)} of the {len(expected)} planned runs ({seeds} seeds) have no run file:")
        lines += [f"- {setting} {dataset} {variant} seed {seed}" for seed, setting, dataset, variant in missing]
    else:
        lines.append(f"None: all {len(expected)} planned runs are present.")
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "REPORT.md").write_text(text)
    for setting in settings:
        keys = [key for key in groups if key[0] == setting]
        if keys:
            plot_setting(out / f"ablation_{setting}.png", setting, {key[1]: groups[key] for key in keys}, variants)
    return text


def plot_setting(path, setting, per_dataset, variants):
    """Accuracy vs training time, one panel per dataset, one marker per variant, error bars: std over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    markers = dict(zip(VARIANTS, "osD^v"))  # the same marker and colour per variant in every figure
    colors = {variant: f"C{i}" for i, variant in enumerate(VARIANTS)}
    cols = min(3, len(per_dataset))
    rows = math.ceil(len(per_dataset) / cols)
    fig = Figure(figsize=(4.2 * cols + 1.8, 3.4 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(per_dataset):]:
        ax.set_visible(False)
    for ax, (dataset, per_variant) in zip(axes, per_dataset.items()):
        for index, variant in enumerate(variants):
            vr = per_variant.get(variant)
            if not vr:
                continue
            t_mean, t_std = _mean_std([r["train_time_s"] for r in vr])
            a_mean, a_std = _mean_std([r["accuracy"] for r in vr])
            ax.errorbar(t_mean, a_mean, xerr=np.nan_to_num(t_std), yerr=np.nan_to_num(a_std),
                        marker=markers.get(variant, "x"), color=colors.get(variant, f"C{index + 5}"), capsize=3,
                        linestyle="none",
                        label=variant)
        ax.set_title(dataset)
        ax.set_xlabel("training time (s)")
        ax.grid(alpha=0.3)
    for ax in axes[::cols]:
        ax.set_ylabel("test accuracy")
    legend = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="outside right center", fontsize="small")
    fig.suptitle(f"setting {setting}: accuracy vs training time, mean ± std over seeds")
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results folder (bench/results/ablation)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA), help="UEA datasets folder (../shared/data/UEA)")
    parser.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds 0..N-1 ({SEEDS})")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--only", nargs="+", metavar="DATASET", help="only these datasets")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, help=f"({' '.join(VARIANTS)})")
    parser.add_argument("--backend", default="auto",
                        help="loss backend: auto (the fastest built for CPU), reference, cpp; recorded per run (auto)")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side, each in its own process (2)")
    parser.add_argument("--threads", type=int, help="torch threads a run (default: the cores / --jobs)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="override every budget (smoke tests; not for the study)")
    budget.add_argument("--iters", type=int, help="override every budget (smoke tests; not for the study)")
    parser.add_argument("--report", action="store_true", help="only build the report from the run files present")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--jobs and --threads must be >= 1")
    known = {d for spec in SETTINGS.values() for d in spec["budgets"]}
    if args.only and set(args.only) - known:
        parser.error(f"--only: unknown dataset(s) {sorted(set(args.only) - known)}; expected among {sorted(known)}")
    from arl_fast.cli import check_loss_name

    for variant in args.variants:
        if variant != "hierarchical":
            try:
                check_loss_name(variant)
            except ValueError as error:
                parser.error(str(error).replace("--losses", "--variants"))
    if not args.report:
        try:
            run_study(args)
        except KeyboardInterrupt:
            raise SystemExit("interrupted: the finished runs are saved; the same command resumes") from None
    print(build_report(args.out, args.settings, args.variants, args.seeds, args.only))


if __name__ == "__main__":
    main()
