"""TS2Vec training on CPU with the reference loss and with the cpp loss, side by side in one run.

    python bench/training_cpu.py                 # ACSF1, TS2Vec's defaults, hierarchical loss, 200 iterations, seed 0
    python bench/training_cpu.py --backends cpp  # the cpp loss alone (e.g. to compare two builds)

Both backends train the same model from the same seed on the same machine, one after the other, and are scored
with TS2Vec's SVM protocol; the table (training time, accuracy, their ratio) goes to bench/results/.
"""

import argparse
import time
from pathlib import Path

import torch

from arl_fast import TS2Vec, load_uea
from arl_fast.backends import cpp
from arl_fast.tasks.classification import classification_accuracy

from cpu_loss import cpu_model


def train_and_score(data, backend, args):
    model = TS2Vec(input_dims=data.X_train.shape[2], loss=args.loss, backend=backend, seed=args.seed, device="cpu")
    start = time.perf_counter()
    model.fit(data.X_train, n_iters=args.iters, progress=False)
    seconds = time.perf_counter() - start
    features = [model.encode(X, encoding_window="full_series") for X in (data.X_train, data.X_test)]
    return seconds, classification_accuracy(features[0], data.y_train, features[1], data.y_test, "svm")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ACSF1")
    parser.add_argument("--loss", default="hierarchical")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="reference,cpp", help="comma-separated, trained in this order")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training_cpu.md")
    args = parser.parse_args()
    data = load_uea(args.dataset)
    backends = args.backends.split(",")
    header = (f"CPU: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, cpp kernels: "
              f"{cpp.isa()}; {args.dataset}, TS2Vec defaults, {args.loss} loss, {args.iters} iterations, seed "
              f"{args.seed}, SVM; command: python bench/training_cpu.py --dataset {args.dataset} --loss {args.loss} "
              f"--iters {args.iters} --seed {args.seed} --backends {args.backends}")
    print(header, flush=True)
    results = {}
    for backend in backends:
        results[backend] = train_and_score(data, backend, args)
        print(f"{backend}: {results[backend][0]:.1f} s, accuracy {results[backend][1]:.3f}", flush=True)
    lines = ["| backend | training time (s) | accuracy |", "|---|---|---|"]
    lines += [f"| {b} | {seconds:.1f} | {accuracy:.3f} |" for b, (seconds, accuracy) in results.items()]
    if "reference" in results and "cpp" in results:
        (ref_s, ref_acc), (cpp_s, cpp_acc) = results["reference"], results["cpp"]
        lines.append(f"| reference / cpp | {ref_s / cpp_s:.2f}x faster with cpp | {cpp_acc - ref_acc:+.3f} "
                     "(cpp - reference) |")
    table = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"{header}\n\n{table}\n")
    print(f"\n{table}\nwritten to {args.out}")


if __name__ == "__main__":
    main()
