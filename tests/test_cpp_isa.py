"""The ISA variants of the cpp kernels: the loader picks the best one this CPU runs, ARL_FAST_ISA and
ATEN_CPU_CAPABILITY only lower the choice, and every variant this CPU runs passes the cpp tests.

The dispatched variant runs the whole of tests/test_cpp_loss.py in this process; each other variant this CPU runs
is forced in a subprocess and runs a subset of it (the float32 grid, the saturated cases, bf16, determinism).
"""

import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from arl_fast.backends import cpp

if not cpp.isa():
    raise RuntimeError(f"the C++ extension must be built for these tests: {cpp.unavailable_reason('cpu')}")

TESTS = Path(__file__).parent
SUBSET = "(all_levels_match_reference and float32) or saturated_cases or bfloat16 or deterministic"


def built(variant):
    return importlib.util.find_spec(cpp.module_name(variant)) is not None


def child_env(drop=(), **overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("ARL_FAST_ISA", "ATEN_CPU_CAPABILITY", *drop)}
    return {**env, **overrides}


ISA_SCRIPT = "from arl_fast.backends import cpp\nprint(cpp.isa() or cpp.unavailable_reason('cpu'))\n"


def isa_in_child(drop=(), **overrides):
    out = subprocess.run([sys.executable, "-c", ISA_SCRIPT], env=child_env(drop, **overrides), capture_output=True,
                         text=True, check=True, timeout=120)
    return out.stdout.strip().splitlines()[-1]


def test_dispatch_takes_the_best_built_variant_this_cpu_runs():
    best = next(v for v in cpp.runnable_variants() if built(v))
    assert cpp.isa() == best
    if "ARL_FAST_ISA" not in os.environ and "ATEN_CPU_CAPABILITY" not in os.environ and not built("native"):
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
        assert best == {"AVX512": "avx512", "AVX2": "avx2"}.get(capability, "default")


def test_every_variant_of_this_platform_is_built():
    """What setup.py builds here is importable: a variant that failed to compile would otherwise go unnoticed."""
    if built("native"):
        return  # an ARL_FAST_MARCH build: one module
    expected = ["default", "avx2", "avx512"] if platform.machine().lower() in ("x86_64", "amd64") else ["default"]
    assert [v for v in expected if not built(v)] == []


def test_overrides_only_lower_the_variant():
    # asking for more than PyTorch's capability (lowered by ATEN_CPU_CAPABILITY) allows gives what it allows
    assert isa_in_child(ARL_FAST_ISA="avx512", ATEN_CPU_CAPABILITY="default") == "default"
    assert isa_in_child(ATEN_CPU_CAPABILITY="default") == "default"


def test_unknown_isa_is_named_in_the_reason():
    reason = isa_in_child(drop=(cpp.REQUIRE_ENV_VAR,), ARL_FAST_ISA="sse9")
    assert "ARL_FAST_ISA='sse9'" in reason and "avx512" in reason
    required = subprocess.run([sys.executable, "-c", ISA_SCRIPT], capture_output=True, text=True, timeout=120,
                              env=child_env(ARL_FAST_ISA="sse9", **{cpp.REQUIRE_ENV_VAR: "1"}))
    assert required.returncode != 0 and "ARL_FAST_ISA='sse9'" in required.stderr


@pytest.mark.parametrize("variant", [v for v in cpp.runnable_variants() if built(v) and v != cpp.isa()])
def test_forced_variant_passes_the_cpp_tests(variant):
    assert isa_in_child(ARL_FAST_ISA=variant) == variant
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                             str(TESTS / "test_cpp_loss.py"), "-k", SUBSET],
                            env=child_env(ARL_FAST_ISA=variant), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
