"""Where a TS2Vec training step spends its time: one step split into its parts, at three shapes, in one run.

    python bench/step_profile.py                                   # all shapes, losses and backends; 1 thread
    python bench/step_profile.py --shapes etth1 --steps 8          # one shape
    python bench/step_profile.py --other-build ../before --rounds 3 --out bench/results/step_profile_epyc.md

The parts, timed one after the other inside a real step (the model's own crops, masks, encoder, loss, AdamW and
averaged-encoder update, in the steady state after warm-up steps):

- ``prepare``: the crop window and offsets, gathering both views, the timestamp masks;
- ``encoder fwd``: both views through the encoder (the training step's own two-view module);
- ``loss fwd`` / ``loss bwd``: the loss on the overlap (with the adaptive loss's probes of every level, every 4th
  step), and its gradient back to ``z1, z2`` (the encoder outputs are cut from the graph, so each backward is
  timed on its own; the gradient is the same);
- ``encoder bwd``: that gradient back through both views;
- ``optimizer``: ``zero_grad`` and ``AdamW.step``;  ``average``: the averaged encoder's update.

The shapes are TS2Vec's defaults on the package's three tasks: ETTh1 multivariate forecasting (B=2, crops up to
3,000 steps, 14 channels), NAB-style anomaly pretraining (B=8, up to 3,000 steps, 1 channel) and ACSF1
classification (B=8, length 1,460, 1 channel).  Every configuration draws the same crops (same seed).  GFLOP/s
count the encoder's convolutions as computed (forward: 2 flops per multiply-add; backward: twice the forward)
and the loss products the reference computes (``S = Z Z^T`` forward, two products backward, per term and
level); the square matmul (float32, 2048) is measured in each configuration's own process, and ``of_mm`` is a
part's GFLOP/s over it.

``--precisions fp32,bf16,bf16-mkl`` profiles float32, bfloat16 autocast, and bfloat16 with the cpp kernels'
bf16 tiles multiplied by MKL (``ARL_FAST_BF16_GEMM=mkl``) instead of their AVX512-BF16 micro-kernel.
``--other-build PATH`` (a checkout with its extension built in place) profiles that checkout's step beside this
one's, configuration by configuration, each in a fresh process; ``--rounds N`` interleaves the builds N times and
keeps each part's median.  A checkout whose encoder computes every timestamp of both views (before the step
spared the last convolution outside the overlap) is profiled as it trains: full outputs, then the overlap cut.
"""

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


SHAPES = {  # name: (batch, series length, channels, max_train_length)
    "etth1": (2, 8640, 14, 3000),
    "nab": (8, 3000, 1, 3000),
    "acsf1": (8, 1460, 1, None),
}
PARTS = ("prepare", "encoder fwd", "loss fwd", "loss bwd", "encoder bwd", "optimizer", "average")


def square_matmul_gflops(n=2048, repeats=3):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def encoder_flops(net, batch, length, kept):
    """Forward flops of the encoder on ``batch`` series of ``length`` steps when ``kept`` outputs are computed by
    the last block's second convolution and projection (``length``: all of them)."""
    flops = 2 * batch * length * net.input_fc.in_features * net.input_fc.out_features
    blocks = list(net.feature_extractor)
    for i, block in enumerate(blocks):
        convs = [(block.conv1.conv, length), (block.conv2.conv, kept if i == len(blocks) - 1 else length)]
        if block.projector is not None:
            convs.append((block.projector, kept if i == len(blocks) - 1 else length))
        for conv, positions in convs:
            flops += 2 * batch * positions * conv.in_channels * conv.out_channels * conv.kernel_size[0]
    return flops


def loss_flops(batch, length, channels, levels):
    """Forward flops of the reference's products: per level, B (2T)^2 C temporal and T (2B)^2 C instance."""
    flops = 0
    for level in levels:
        t = length >> level
        if t > 1:
            flops += 2 * batch * (2 * t) ** 2 * channels
        flops += 2 * t * (2 * batch) ** 2 * channels
    return flops


def profile(shape, loss, backend, precision, steps, warmup, seed):
    """Mean seconds per part and flops per step of ``steps`` steps after ``warmup``, in this process."""
    from arl_fast import TS2Vec
    from arl_fast.losses import num_levels
    from arl_fast.selector import ResolutionSelector
    from arl_fast.training import TwoViews, _autocast, binomial_mask, crop_views, draw_crop

    batch, length, channels, max_train_length = SHAPES[shape]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, length, channels)).astype(np.float32)
    model = TS2Vec(channels, loss=loss, backend=backend, batch_size=batch, max_train_length=max_train_length,
                   seed=seed, device="cpu", precision=precision)
    data = model._prepare_train(X)
    window = max_train_length if max_train_length is not None and length > max_train_length else None
    net = TwoViews(model._net)
    pruned = "overlap" in inspect.signature(net.forward).parameters
    totals = dict.fromkeys(PARTS, 0.0)
    flops = {"encoder fwd": 0, "encoder bwd": 0, "loss fwd": 0, "loss bwd": 0}
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        x = data[:batch]
        if window is not None:
            start = int(torch.randint(data.size(1) - window + 1, (), generator=model._host_generator))
            x = x[:, start : start + window]
        crop = draw_crop(x.size(1), x.size(0), model.temporal_unit, model._host_generator, model._generator, x.device)
        view1, view2 = crop_views(x, crop)
        mask1 = binomial_mask(*view1.shape[:2], model._generator, x.device)
        mask2 = binomial_mask(*view2.shape[:2], model._generator, x.device)
        t1 = time.perf_counter()
        with _autocast(x.device, precision):
            if pruned:
                z1, z2 = net(view1, mask1, view2, mask2, model._generator, crop.crop_l)
            else:
                z1, z2 = net(view1, mask1, view2, mask2, model._generator)
                z1, z2 = z1[:, -crop.crop_l :], z2[:, : crop.crop_l]
        t2 = time.perf_counter()
        o1, o2 = z1.detach().requires_grad_(), z2.detach().requires_grad_()
        probed = model.loss is not None and model.loss.selection == "adaptive" and \
            model.loss._step % model.loss.probe_every == 0
        value, _ = model._compute_loss(o1, o2)
        t3 = time.perf_counter()
        value.backward()
        t4 = time.perf_counter()
        model._optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward([z1, z2], [o1.grad, o2.grad])
        t5 = time.perf_counter()
        model._optimizer.step()
        t6 = time.perf_counter()
        model._update_average()
        t7 = time.perf_counter()
        if step < warmup:
            continue
        for part, (a, b) in zip(PARTS, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6), (t6, t7))):
            totals[part] += b - a
        kept = crop.crop_l if pruned else None
        enc = sum(encoder_flops(model._net, batch, v.size(1), kept or v.size(1)) for v in (view1, view2))
        flops["encoder fwd"] += enc
        flops["encoder bwd"] += 2 * enc
        n = num_levels(crop.crop_l)
        if model.loss is None:
            trained = range(n)
        else:
            trained = [0 if model.loss.resolution is None else ResolutionSelector.level_for(model.loss.resolution, n)]
        trained_flops = loss_flops(batch, crop.crop_l, z1.size(2), trained)
        flops["loss fwd"] += trained_flops + (loss_flops(batch, crop.crop_l, z1.size(2), range(n)) if probed else 0)
        flops["loss bwd"] += 2 * trained_flops
    return {part: totals[part] / steps for part in PARTS}, {k: v / steps for k, v in flops.items()}


def worker(config):
    """One configuration in this (fresh) process: the step's parts, its flops, the square matmul."""
    torch.set_num_threads(config["threads"])
    import arl_fast
    from arl_fast.backends import cpp

    seconds, flops = profile(config["shape"], config["loss"], config["backend"], config["precision"],
                             config["steps"], config["warmup"], config["seed"])
    return {"seconds": seconds, "flops": flops, "matmul_gflops": square_matmul_gflops(),
            "isa": cpp.isa() if cpp.is_available("cpu") else "none", "package": str(Path(arl_fast.__file__).parent)}


def run_config(config, build):
    """``worker(config)`` in a fresh process, importing arl_fast from ``build`` (None: this checkout)."""
    env = dict(os.environ)
    if build is not None:
        env["PYTHONPATH"] = str(Path(build).resolve())
    if config["precision"] == "bf16-mkl":  # bf16 with the kernels' bf16 tiles through MKL
        env["ARL_FAST_BF16_GEMM"] = "mkl"
        config = dict(config, precision="bf16")
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)], env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed for {config} (build {build or 'this'}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def format_row(label, config, result):
    seconds, flops, mm = result["seconds"], result["flops"], result["matmul_gflops"]
    step = sum(seconds.values())
    cells = []
    for part in PARTS:
        cell = f"{seconds[part]:.3f} ({seconds[part] / step:.0%}"
        if part in flops and seconds[part] > 0 and flops[part] > 0:
            rate = flops[part] / seconds[part] / 1e9
            cell += f", {rate:.0f}, {rate / mm:.2f}"
        cells.append(cell + ")")
    return (f"| {config['shape']} | {config['loss']} | {config['backend']} | {config['precision']} | {label} | "
            f"{step:.3f} | " + " | ".join(cells) + f" | {mm:.0f} |")


def median_result(results):
    """Each part's median over rounds (and the median square matmul)."""
    return {
        "seconds": {p: statistics.median(r["seconds"][p] for r in results) for p in PARTS},
        "flops": results[0]["flops"],
        "matmul_gflops": statistics.median(r["matmul_gflops"] for r in results),
        "isa": results[0]["isa"],
        "package": results[0]["package"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--losses", default="hierarchical,adaptive")
    parser.add_argument("--backends", default="cpp,reference")
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16 (autocast), bf16-mkl (bf16 with the cpp "
                        "kernels' bf16 tiles through MKL's gemm instead of their micro-kernel)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration (a multiple of 4 "
                                                             "averages the adaptive loss's probes)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; each part's median is kept")
    parser.add_argument("--other-build", type=Path, default=None,
                        help="a checkout with its extension built in place, profiled beside this one")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    parser.add_argument("--append", action="store_true", help="append to --out instead of replacing it")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    for name in args.shapes.split(","):
        if name not in SHAPES:
            parser.error(f"--shapes: unknown shape {name!r}; known: {', '.join(SHAPES)}")
    if args.other_build is not None and not (args.other_build / "arl_fast").is_dir():
        parser.error(f"--other-build {args.other_build} holds no arl_fast package")
    from arl_fast.info import cpu_model, header  # here: the workers may import another checkout's arl_fast

    torch.set_num_threads(args.threads)  # what the workers run with, so the header says it

    builds = [("this", None)] + ([(f"other ({args.other_build})", args.other_build)] if args.other_build else [])
    lines = [
        f"# Step profile: python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}",
        "",
        header("cpu", "auto"),
        "",
        f"CPU: {cpu_model()} ({platform.machine()}), torch {torch.__version__}, {args.threads} thread(s); "
        f"{args.steps} steps after {args.warmup} warm-up, mean per step"
        + (f", median of {args.rounds} interleaved rounds" if args.rounds > 1 else "") + ". Each cell: seconds "
        "(share of the step, GFLOP/s, of the square matmul measured in the same process).",
        "",
        "| shape | loss | backend | precision | build | step s | " + " | ".join(PARTS) + " | matmul GFLOP/s |",
        "|" + "---|" * (7 + len(PARTS)),
    ]
    print("\n".join(lines), flush=True)
    for shape in args.shapes.split(","):
        for loss in args.losses.split(","):
            for backend in args.backends.split(","):
                for precision in args.precisions.split(","):
                    config = {"shape": shape, "loss": loss, "backend": backend, "precision": precision,
                              "steps": args.steps, "warmup": args.warmup, "seed": args.seed, "threads": args.threads}
                    runs = {label: [] for label, _ in builds}
                    for _ in range(args.rounds):
                        for label, build in builds:
                            runs[label].append(run_config(config, build))
                    for label, _ in builds:
                        row = format_row(label, config, median_result(runs[label]))
                        lines.append(row)
                        print(row, flush=True)
    if args.out is not None:
        before = args.out.read_text() + "\n" if args.append and args.out.exists() else ""
        args.out.write_text(before + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
