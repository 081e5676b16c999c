"""Forward + backward of the reference and the cpp loss on CPU at TS2Vec's sizes (B=8, C=320), side by side.

Run with ``pytest bench/test_bench_cpu.py``; prints time per call and the memory the loss holds for backward.
Peak memory, long series and the machine's yardstick are in ``python bench/cpu_loss.py``.
"""

import pytest
import torch

from arl_fast import available_backends, hierarchical_contrastive_loss, resolution_loss

from memory import saved_tensor_bytes

B, C = 8, 320
LENGTHS = [100, 500, 1000]


def make_inputs(T):
    g = torch.Generator().manual_seed(T)
    return [torch.randn(B, T, C, generator=g).requires_grad_() for _ in range(2)]


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize("what", ["all levels", "level 0"])
def test_cpu_forward_backward(benchmark, bench_report, T, what, backend):
    if backend not in available_backends():
        pytest.skip(f"{backend} is not built here")
    z1, z2 = make_inputs(T)

    def loss():
        if what == "all levels":
            return hierarchical_contrastive_loss(z1, z2, backend=backend)
        return resolution_loss(z1, z2, 0, backend=backend)

    def step():
        loss().backward()

    _, held = saved_tensor_bytes(loss)
    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    bench_report({"backend": backend, "what": what, "B": B, "T": T, "C": C,
                  "mean_s": benchmark.stats.stats.mean, "held_for_backward_MiB": held / 2**20})
