"""Forward + backward of the reference and the Triton backend at TS2Vec's sizes (B=8, C=320) on a GPU.

Run with ``pytest bench/test_bench_triton.py``; prints time per call, peak memory and achieved TFLOP/s.
GPU only: under Triton's interpreter timings would say nothing.  ``bench/gpu_check.py`` prints the same
comparison as one table, after checking the kernels' results.
"""

import pytest
import torch

from gpu_check import B, C, LENGTHS, loss_flops, loss_fn, random_inputs
from arl_fast import num_levels

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (timings under "
                                "Triton's interpreter say nothing)")


@pytest.fixture(params=["high", "highest"])
def precision(request):
    """float32 matmul precision for the test: "high" lets both backends use TF32, "highest" neither."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(request.param)
    yield request.param
    torch.set_float32_matmul_precision(previous)


@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize("what", ["level 0", "all levels"])
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_forward_backward(benchmark, bench_report, backend, what, T, precision):
    z1, z2 = random_inputs(B, T, C)
    level = 0 if what == "level 0" else None
    fn = loss_fn(backend, level)

    def step():
        fn(z1, z2).backward()
        z1.grad = z2.grad = None
        torch.cuda.synchronize()

    try:
        step()  # compile, warm up, and find out whether it fits
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        pytest.skip(f"{backend} does not fit in the GPU's memory at T={T}")
    torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    seconds = benchmark.stats.stats.median
    levels = range(num_levels(T)) if level is None else [0]
    bench_report({"backend": backend, "what": what, "B": B, "T": T, "C": C, "precision": precision,
                  "median_s": seconds, "peak_GiB": torch.cuda.max_memory_allocated() / 2**30,
                  "TFLOP/s": loss_flops(B, T, C, levels) / seconds / 1e12})
