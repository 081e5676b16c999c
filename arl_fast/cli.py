"""The ``arl-fast`` command: ``compare`` prints the paper's Table 1 for any dataset, ``train`` runs one model,
``info`` says what this install can run."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .adaptive import variant_options
from .backends import backend_names, kernel_variant, resolve_backend
from .data import load_uea
from .info import format_report, header, report
from .plots import write_compare_plots
from .tasks import anomaly, classification, forecasting
from .tasks.classification import format_table, summarize, totals  # noqa: F401  (Table 1, as before)
from .training import TrainingDiverged
from .ts2vec import TS2Vec


# What ``compare`` runs without --dataset: long enough series for the loss to dominate a training step,
# a budget that trains both losses in under 5 minutes on 2 CPU cores with TS2Vec's default model.
DEMO_DATASET, DEMO_EPOCHS = classification.DEFAULT_DATASET, 5

# The tasks ``compare --task`` runs, each a module of arl_fast.tasks with the same functions.
TASKS = {module.TASK: module for module in (classification, forecasting, anomaly)}


# What ``compare`` trains without --losses: TS2Vec's loss and the paper's.
DEFAULT_LOSSES = ["hierarchical", "adaptive"]


def available_losses() -> list[str]:
    """The losses ``compare`` can train; "adaptive@T" (eq. 5 at temperature T > 0) is accepted too."""
    return ["hierarchical", "adaptive", "uniform", "finest"]


def check_loss_name(name: str) -> str:
    """``name`` if ``compare`` can train it, else ValueError saying what is expected."""
    if name == "hierarchical":
        return name
    try:
        variant_options(name)
    except ValueError as error:
        if "@" in name:  # a temperature problem: variant_options says which
            raise ValueError(f"--losses: {error}") from None
        raise ValueError(f"--losses: unknown loss {name!r}; expected one of {', '.join(available_losses())} "
                         f"or adaptive@T (T > 0, e.g. adaptive@0.1)") from None
    return name


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return value


def _add_training_options(parser):
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", metavar="DIR", help="classification: folder holding NAME/NAME_TRAIN.ts and "
                      "NAME_TEST.ts (or .ts.gz), also searched: $ARL_FAST_DATA, aeon's bundled datasets and its "
                      "download cache; forecasting: folder holding NAME.csv; anomaly: the NAB folder (or one of "
                      "its subfolders)")
    model = parser.add_argument_group("model and training (TS2Vec's defaults; the paper's appendix D.4 used "
                                      "--repr-dims 16 --depth 2)")
    model.add_argument("--repr-dims", type=_positive_int, default=320, metavar="N", help="representation size (320)")
    model.add_argument("--hidden-dims", type=_positive_int, default=64, metavar="N", help="hidden size (64)")
    model.add_argument("--depth", type=_non_negative_int, default=10, metavar="N", help="residual blocks (10)")
    model.add_argument("--batch-size", type=_positive_int, default=8, metavar="N", help="batch size, of each rank under torchrun (8)")
    model.add_argument("--lr", type=_positive_float, default=1e-3, help="AdamW learning rate (0.001)")
    model.add_argument("--max-train-length", type=_positive_int, default=3000, metavar="N",
                       help="longer series are cut into pieces of at most about N steps for training (3000)")
    model.add_argument("--temporal-unit", type=_non_negative_int, default=0, metavar="K",
                       help="contrast timestamps only from level K on, to save time and memory on long series (0)")
    budget = model.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=_positive_int, metavar="N", help="train N epochs")
    budget.add_argument("--iters", type=_positive_int, metavar="N",
                        help="train N iterations (default: 200, or 600 for more than 100,000 values, as TS2Vec)")
    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train (auto)")
    run.add_argument("--backend", default="auto", metavar="NAME",
                     help=f"loss backend: auto (the fastest that runs on the device), {', '.join(backend_names())}; "
                          "'arl-fast info' shows which run here (auto)")
    run.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                     help="fp32, or mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA only); weights stay fp32 (fp32)")
    run.add_argument("--threads", type=_positive_int, metavar="N",
                     help="CPU threads PyTorch may use (default: PyTorch's choice, one per core; on a machine busy "
                          "with other work, 1 can be much faster)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arl-fast",
        description="Train TS2Vec with TS2Vec's hierarchical contrastive loss or the adaptive resolution loss "
                    "on UCR/UEA datasets, and compare their training time and accuracy.",
        epilog="examples:\n"
               "  arl-fast compare                                  # ACSF1 for 5 epochs, both losses, 1 seed\n"
               "  arl-fast compare --dataset Cricket --data-dir ../shared/data/UEA --seeds 5 --device cuda\n"
               "  arl-fast train --dataset ACSF1 --loss adaptive --out acsf1.pt --checkpoint-every 1\n"
               "  torchrun --nproc-per-node 2 -m arl_fast train --dataset ACSF1 --threads 1 --out acsf1.pt\n"
               "  arl-fast info                                     # what this install runs, and why not\n\n"
               "run 'arl-fast COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    compare = commands.add_parser(
        "compare", help="train every loss on every dataset and print the paper's Table 1",
        description="Train TS2Vec with each loss, for each seed, on each dataset; print a table in the shape of the "
                    "paper's Table 1 (training time and test accuracy per loss, their time ratio, a total row) and "
                    "write DIR/results.json (and plots when arl_fast.plots is installed). Training time counts "
                    "only model fitting.",
    )
    compare.add_argument("--dataset", action="append", metavar="NAME",
                         help=f"UCR/UEA dataset; repeat for several. Without it: {DEMO_DATASET} (length 1460, ships "
                              f"with aeon) for {DEMO_EPOCHS} epochs unless --epochs/--iters say otherwise, a "
                              "comparison of a few minutes on 2 CPU cores where the loss is most of a training step; "
                              "--dataset BasicMotions is the short-series case")
    compare.add_argument("--losses", nargs="+", metavar="LOSS",
                         help=f"losses to train, among {' '.join(available_losses())} and adaptive@T (eq. 5 at "
                              f"temperature T, e.g. adaptive@0.1); uniform draws each epoch's resolution uniformly, "
                              f"finest trains level 0 only (default: {' '.join(DEFAULT_LOSSES)})")
    compare.add_argument("--seeds", type=_positive_int, default=1, metavar="N",
                         help="runs per loss, seeds 0..N-1 (1; the paper used 5)")
    compare.add_argument("--out", metavar="DIR", help="output folder (default: runs/<timestamp>)")
    compare.add_argument("--task", choices=list(TASKS), default="classification",
                         help="classification (UCR/UEA, accuracy), forecasting (a CSV with a date column, e.g. "
                              "--dataset ETTh1 --data-dir ../shared/data/ETT: MSE / MAE per horizon) or anomaly "
                              "(NAB-style series: F1) (classification)")
    _add_training_options(compare)
    for module in TASKS.values():
        module.add_arguments(compare.add_argument_group(f"{module.TASK} options"))

    train = commands.add_parser(
        "train", help="train one model, report its accuracy and save it",
        description="Train one TS2Vec model on a dataset's train split, report its test accuracy and save a "
                    "checkpoint that TS2Vec.from_checkpoint loads (encoders, optimiser, counters and RNG state, "
                    "so training can resume).",
    )
    train.add_argument("--dataset", default="BasicMotions", metavar="NAME", help="UCR/UEA dataset (BasicMotions)")
    train.add_argument("--loss", default="hierarchical", choices=available_losses(), help="loss (hierarchical)")
    train.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (0)")
    train.add_argument("--out", metavar="FILE", help="checkpoint path, written at the end, every --checkpoint-every "
                       "epochs and on Ctrl-C (default: the --resume file, else runs/<timestamp>/model.pt)")
    train.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                       help="also write the checkpoint every N epochs (atomically: a killed run keeps the last one)")
    classification.add_arguments(train.add_argument_group("classification options"))
    train.add_argument("--resume", metavar="FILE", nargs="?", const="",
                       help="continue training this checkpoint (default: the --out file) up to the --epochs/--iters "
                            "total, with the model and training options saved in it")
    _add_training_options(train)

    info = commands.add_parser(
        "info", help="say what this install can run: versions, hardware, every backend and why one cannot run",
        description="Print the package, torch and Triton versions, the CPU and GPUs, for every loss backend on "
                    "every device type here whether it runs (and its kernel variant) or why not, and what "
                    "--backend auto picks per device: short text to paste into a bug report.",
    )
    info.add_argument("--json", action="store_true", help="print the same as JSON, for scripts")
    return parser


def _model(args, input_dims, loss, seed, device):
    return TS2Vec(
        input_dims, output_dims=args.repr_dims, hidden_dims=args.hidden_dims, depth=args.depth, loss=loss,
        temporal_unit=args.temporal_unit, backend=args.backend, lr=args.lr, batch_size=args.batch_size,
        max_train_length=args.max_train_length, device=device, seed=seed, precision=args.precision,
    )


def _timed_fit(model, X, args):
    """Fit ``model`` and return the seconds it took (waiting for the device to finish)."""
    start = time.perf_counter()
    model.fit(X, n_epochs=args.epochs, n_iters=args.iters, progress=not args.quiet)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return time.perf_counter() - start


def _default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def _device(name) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here (try --device cpu)")
    return torch.device(name)


def compare(args, device: torch.device) -> int:
    task = TASKS[args.task]
    losses = args.losses or DEFAULT_LOSSES
    names = dict.fromkeys(part for item in losses for part in item.split(",") if part)
    losses = [check_loss_name(name) for name in names]
    if task is classification and not args.dataset and args.epochs is None and args.iters is None:
        args.epochs = DEMO_EPOCHS
    datasets = list(dict.fromkeys(args.dataset or [task.DEFAULT_DATASET]))
    backend = resolve_backend(args.backend, device)
    variant = kernel_variant(backend, device)
    print(header(device, args.backend), flush=True)
    out_dir = Path(args.out) if args.out else _default_run_dir()

    runs, histories, artefacts, lengths, baselines = [], {}, {}, {}, {}
    results_path = out_dir / "results.json"
    progress = tqdm(total=len(datasets) * len(losses) * args.seeds, unit="run", desc="compare", disable=args.quiet)
    for dataset in datasets:
        data = task.load(dataset, args.data_dir, args)
        series = task.train_series(data)
        lengths[dataset] = series.shape[1]
        row = task.baseline(data, args)
        if row is not None:
            baselines[dataset] = row
        # Seeds outermost, so every loss sees the same machine load when it drifts during a long comparison.
        for seed in range(args.seeds):
            for loss in losses:
                progress.set_postfix_str(f"{dataset} {loss} seed {seed}")
                model = _model(args, series.shape[2], loss, seed, device)
                train_time = _timed_fit(model, series, args)
                metrics, artefact = task.evaluate(model, data, args)
                runs.append({
                    "dataset": dataset, "length": lengths[dataset], "loss": loss, "seed": seed,
                    "train_time_s": train_time, **metrics, "epochs": model.n_epochs,
                    "iters": model.n_iters, "device": device.type, "backend": backend, "kernel_variant": variant,
                })
                history = {"log": model.loss_log}
                if hasattr(model.loss, "history"):
                    history["adaptive"] = model.loss.history
                histories[(dataset, loss, seed)] = history
                if seed == 0:
                    artefacts[(dataset, loss, seed)] = artefact
                results = _results(task, runs, losses, lengths, baselines, args, device)
                out_dir.mkdir(parents=True, exist_ok=True)
                _write_json(results_path, results)  # after every run: nothing lost on a stop
                progress.write(f"{dataset} {loss} seed {seed}: {train_time:.2f} s, {_headline(task, metrics)}")
                progress.update()
    progress.close()

    print(task.format_table(results))
    print(f"\nresults: {results_path}")
    write_compare_plots(out_dir, results, histories, {})
    task.write_plots(out_dir, results, artefacts)
    print(f"plots: {out_dir}")
    return 0


def _headline(task, metrics) -> str:
    """One line of a run's quality figures: each metric, or its first and last entries when it is per horizon."""
    parts = []
    for name in task.METRICS:
        value = metrics[name]
        if isinstance(value, dict):
            keys = list(value)
            parts += [f"{name}@{key} {value[key]:.3f}" for key in dict.fromkeys([keys[0], keys[-1]])]
        else:
            parts.append(f"{name} {value:.3f}")
    return ", ".join(parts)


def _write_json(path: Path, content: dict) -> None:
    """Write ``content`` as JSON atomically: a stop while writing leaves the previous file whole."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2))
    os.replace(partial, path)


def _results(task, runs, losses, lengths, baselines, args, device) -> dict:
    """The content of results.json for the runs so far."""
    summary = task.summarize(runs)
    results = {"task": task.TASK, "runs": runs, "summary": summary, "losses": losses, "lengths": lengths}
    if task is classification:
        results["total"] = totals(summary, losses)
    if baselines:
        results["baseline"] = baselines
    results["config"] = {**{key: value for key, value in vars(args).items() if key != "command"},
                         "device": device.type, "threads": torch.get_num_threads()}
    return results


def _init_distributed(device: torch.device) -> tuple[torch.device, bool]:
    """Under torchrun (WORLD_SIZE > 1) join the process group, NCCL on CUDA and gloo on CPU; returns this rank's
    device and whether the group was started here."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, True


def train(args, device: torch.device) -> int:
    device, started = _init_distributed(device)
    try:
        return _train(args, device, dist.get_rank() if dist.is_initialized() else 0)
    finally:
        if started:
            dist.destroy_process_group()


def _train(args, device: torch.device, rank: int) -> int:
    resolve_backend(args.backend, device)
    if args.resume == "" and not args.out:
        raise ValueError("--resume without a FILE continues the --out checkpoint: give --out FILE or --resume FILE")
    path = Path(args.out or args.resume or _default_run_dir() / "model.pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = load_uea(args.dataset, args.data_dir)
    if args.resume is not None:
        model = TS2Vec.from_checkpoint(args.resume or path, device=device)
    else:
        model = _model(args, data.X_train.shape[2], args.loss, args.seed, device)
    if rank == 0:
        print(header(model.device, model.backend), flush=True)  # a resumed model keeps its own backend
    start = time.perf_counter()
    model.fit(data.X_train, n_epochs=args.epochs, n_iters=args.iters, progress=not args.quiet, checkpoint=path,
              checkpoint_every=args.checkpoint_every)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    train_time = time.perf_counter() - start
    if rank != 0:
        return 0
    accuracy = classification.evaluate(model, data, args)[0]["accuracy"]
    print(f"{args.dataset} {model.loss_name}: {model.n_epochs} epochs, {model.n_iters} iterations, "
          f"{train_time:.2f} s, accuracy {accuracy:.3f}")
    print(f"model: {path}")
    return 0


def main(argv=None) -> int:
    """Entry point of ``arl-fast``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "info":
        found = report()
        print(json.dumps(found, indent=2) if args.json else format_report(found))
        return 0
    threads = torch.get_num_threads()
    try:
        device = _device(args.device)
        torch.set_num_threads(args.threads or threads)
        return compare(args, device) if args.command == "compare" else train(args, device)
    except (ValueError, FileNotFoundError) as error:
        print(f"arl-fast {args.command}: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"arl-fast {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:  # TrainingInterrupted (SIGINT or SIGTERM), or Ctrl-C elsewhere
        print(f"arl-fast {args.command}: {str(interrupt) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(interrupt, "signum", signal.SIGINT)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())
