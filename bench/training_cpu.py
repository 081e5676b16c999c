"""TS2Vec training on CPU with the reference loss and with the cpp loss, side by side in one run.

    python bench/training_cpu.py                 # ACSF1, TS2Vec's defaults, hierarchical loss, 200 iterations, seed 0
    python bench/training_cpu.py --backends cpp --other-build ../old --rounds 2   # this build vs another checkout's

Every backend trains the same model from the same seed on the same machine, each run in a fresh process, and is
scored with TS2Vec's SVM protocol; the table (training time, accuracy, their ratio) goes to bench/results/.
``--other-build`` (a checkout with its extension built in place) trains with that checkout's package instead of
this one's (backend "cpp (other)"): the process only uses ``TS2Vec(...).fit`` and ``encode``, and hands its
features back to be scored here.  With ``--rounds N`` the runs are interleaved round by round and the table
holds the median time (the accuracy of every round is the same: same seed, deterministic kernels).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np


def worker(backend, dataset, loss, iters, seed, features_path):
    """Run in a fresh process (possibly with another checkout's arl_fast): train, encode, save the features."""
    from arl_fast import TS2Vec, load_uea
    from arl_fast.backends import cpp

    data = load_uea(dataset)
    model = TS2Vec(input_dims=data.X_train.shape[2], loss=loss, backend=backend, seed=seed, device="cpu")
    start = time.perf_counter()
    model.fit(data.X_train, n_iters=iters, progress=False)
    seconds = time.perf_counter() - start
    train, test = (model.encode(X, encoding_window="full_series") for X in (data.X_train, data.X_test))
    np.savez(features_path, train=train, test=test)
    isa = cpp.isa() if hasattr(cpp, "isa") else "single build"
    print(json.dumps({"seconds": seconds, "isa": isa}))


def train_and_score(data, backend, args):
    """(seconds, accuracy, isa) of one training run in a fresh process."""
    env = dict(os.environ)
    other = backend == "cpp (other)"
    if other:
        env["PYTHONPATH"] = str(args.other_build.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        features = Path(tmp) / "features.npz"
        out = subprocess.run([sys.executable, __file__, "--worker", "cpp" if other else backend, args.dataset,
                              args.loss, str(args.iters), str(args.seed), str(features)],
                             capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"training with {backend} failed:\n{out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        with np.load(features) as f:
            train, test = f["train"], f["test"]
    from arl_fast.tasks.classification import classification_accuracy

    accuracy = classification_accuracy(train, data.y_train, test, data.y_test, "svm")
    return result["seconds"], accuracy, result["isa"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ACSF1")
    parser.add_argument("--loss", default="hierarchical")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="reference,cpp", help="comma-separated, trained in this order")
    parser.add_argument("--other-build", type=Path, default=None,
                        help="a checkout with its extension built in place, trained after the backends ('cpp (other)')")
    parser.add_argument("--rounds", type=int, default=1, help="train every backend this many times, interleaved")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training_cpu.md")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        backend, dataset, loss, iters, seed, path = args.worker
        return worker(backend, dataset, loss, int(iters), int(seed), path)

    from arl_fast import load_uea
    from arl_fast.info import header as arl_fast_header

    data = load_uea(args.dataset)
    backends = args.backends.split(",") + (["cpp (other)"] if args.other_build else [])
    command = (f"python bench/training_cpu.py --dataset {args.dataset} --loss {args.loss} --iters {args.iters} "
               f"--seed {args.seed} --backends {args.backends}")
    command += f" --other-build {args.other_build}" if args.other_build else ""
    command += f" --rounds {args.rounds}" if args.rounds > 1 else ""
    header = (f"{arl_fast_header('cpu')}; {args.dataset}, TS2Vec defaults, {args.loss} loss, {args.iters} "
              f"iterations, seed {args.seed}, SVM, each run in a fresh process; command: {command}")
    print(header, flush=True)
    runs = {backend: [] for backend in backends}
    for _ in range(args.rounds):
        for backend in backends:
            runs[backend].append(train_and_score(data, backend, args))
            seconds, accuracy, isa = runs[backend][-1]
            print(f"{backend} ({isa}): {seconds:.1f} s, accuracy {accuracy:.3f}", flush=True)
    results = {}
    for backend, found in runs.items():
        isa = found[0][2]
        label = f"cpp ({args.other_build}, {isa})" if backend == "cpp (other)" else backend
        results[label] = (median(r[0] for r in found), found[0][1], [r[0] for r in found], [r[1] for r in found])
    lines = ["| backend | training time (s) | accuracy | every round: time (s), accuracy |", "|---|---|---|---|"]
    lines += [f"| {b} | {seconds:.1f} | {accuracy:.3f} | {', '.join(f'{t:.1f}' for t in times)}; "
              f"{', '.join(f'{a:.3f}' for a in accuracies)} |"
              for b, (seconds, accuracy, times, accuracies) in results.items()]
    if "reference" in results and "cpp" in results:
        (ref_s, ref_acc, *_), (cpp_s, cpp_acc, *_) = results["reference"], results["cpp"]
        lines.append(f"| reference / cpp | {ref_s / cpp_s:.2f}x faster with cpp | {cpp_acc - ref_acc:+.3f} "
                     "(cpp - reference) | |")
    other = [label for label in results if label.startswith("cpp (")]
    if "cpp" in results and other:
        (cpp_s, cpp_acc, *_), (other_s, other_acc, *_) = results["cpp"], results[other[0]]
        lines.append(f"| other / cpp | {other_s / cpp_s:.2f}x the time with this build | "
                     f"{cpp_acc - other_acc:+.3f} (this - other) | |")
    table = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"{header}\n\n{table}\n")
    print(f"\n{table}\nwritten to {args.out}")


if __name__ == "__main__":
    main()
