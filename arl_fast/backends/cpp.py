"""Fused CPU backend: the C++ kernels in ``csrc/``, registered as the torch ops ``arl_fast::cpp_level_losses`` and
``arl_fast::cpp_level_losses_backward``.

The kernels compute one or all levels straight from ``z1, z2`` in O(B*T*C) memory: similarity tiles from BLAS,
an online log-sum-exp, half of the tiles thanks to the symmetry of ``S = Z Z^T``, and a backward that recomputes
tiles from the saved per-row softmax statistics, maximum and log-sum kept apart (``csrc/cpu/contrastive_loss.cpp``).
float64 is the exact path; float32 accumulates in float32; bfloat16 is multiplied in bfloat16 with float32
accumulation where the CPU has fast bf16 instructions (AVX512-BF16 or AMX), and in float32 elsewhere, as is
float16.  Gradients come back in the input dtype.

The kernels are built once per instruction set, each variant its own module (``setup.py``): ``default``,
``avx2`` and ``avx512`` on x86-64 (``default`` only elsewhere), or one ``native`` module from an
``ARL_FAST_MARCH=native`` build.  At import the best variant this CPU runs is loaded, once, as PyTorch sees the
CPU (``torch.backends.cpu.get_cpu_capability()``, which ``ATEN_CPU_CAPABILITY`` lowers); ``ARL_FAST_ISA=default |
avx2 | avx512 | native`` caps the choice (it can only lower it); ``isa()`` names the variant in use.  Only one
variant is ever imported in a process: each registers the same ops.

When no variant is built (no compiler at install time) the backend reports why and ``"auto"`` uses the
reference, with a warning that says so; with ``ARL_FAST_REQUIRE_EXT=1`` a missing extension is an error at import
instead.  ``arl-fast info`` shows the variant loaded, or why none is.
"""

import importlib
import importlib.util
import os

import torch

REQUIRE_ENV_VAR = "ARL_FAST_REQUIRE_EXT"
ISA_ENV_VAR = "ARL_FAST_ISA"
VARIANTS = ("default", "avx2", "avx512", "native")  # lowest first; "native" is a -march build of the build machine
_CAPABILITY_VARIANTS = {"DEFAULT": "default", "AVX2": "avx2", "AVX512": "avx512"}


def module_name(variant):
    """The module that holds a variant's kernels."""
    return f"arl_fast._C_{variant}"


def runnable_variants():
    """The variants this CPU runs and ARL_FAST_ISA allows, best first (built or not).

    PyTorch's capability decides among default, avx2 and avx512 (other capabilities, e.g. aarch64's, run
    default); a native module, where one is built, is taken to run here (it was built for this machine) unless
    ATEN_CPU_CAPABILITY lowers the capability.
    """
    capability = _CAPABILITY_VARIANTS.get(torch.backends.cpu.get_cpu_capability(), "default")
    allowed = VARIANTS[: VARIANTS.index(capability) + 1]
    if "ATEN_CPU_CAPABILITY" not in os.environ:
        allowed += ("native",)
    cap = os.environ.get(ISA_ENV_VAR, "").strip().lower()
    if cap:
        if cap not in VARIANTS:
            raise ValueError(f"{ISA_ENV_VAR}={cap!r} is not one of {', '.join(VARIANTS)}")
        allowed = tuple(v for v in allowed if VARIANTS.index(v) <= VARIANTS.index(cap))
    return sorted(allowed, key=VARIANTS.index, reverse=True)


def built_variants():
    """The variants whose modules are installed, lowest first, whether this CPU runs them or not."""
    return [v for v in VARIANTS if importlib.util.find_spec(module_name(v)) is not None]


def _load():
    """Imports the best runnable variant; returns (variant, "") or ("", why none could be loaded)."""
    try:
        candidates = runnable_variants()
    except ValueError as error:
        return "", f"{error}; unset it or give one of those"
    failures = {}  # why -> the modules that failed so
    for variant in candidates:
        name = module_name(variant)
        try:
            importlib.import_module(name)  # importing it registers the ops
        except ImportError as error:
            why = "not built" if isinstance(error, ModuleNotFoundError) and error.name == name else str(error)
            failures.setdefault(why, []).append(name)
            continue
        return variant, ""
    excluded = [v for v in built_variants() if v not in candidates]
    if excluded:
        limits = " and ".join(f"{var}={os.environ[var]}" for var in (ISA_ENV_VAR, "ATEN_CPU_CAPABILITY")
                              if var in os.environ)
        if limits:
            return "", (f"the C++ extension is built only in variants that {limits} rules out "
                        f"({', '.join(excluded)}): unset it")
        return "", (f"the C++ extension is built only in variants this CPU cannot run ({', '.join(excluded)}); "
                    "reinstall to build the others: pip install --no-build-isolation -e .")
    tried = "; ".join(f"{', '.join(names)}: {why}" for why, names in failures.items())
    return "", (f"no C++ extension of arl_fast that this CPU runs can be loaded ({tried}); "
                "reinstall with a C++ compiler: pip install --no-build-isolation -e .")


_ISA, _LOAD_ERROR = _load()
if _LOAD_ERROR and os.environ.get(REQUIRE_ENV_VAR) == "1":
    raise RuntimeError(f"{REQUIRE_ENV_VAR}=1 but {_LOAD_ERROR}")


def unavailable_reason(device):
    if _LOAD_ERROR:
        return _LOAD_ERROR
    if torch.device(device).type != "cpu":
        return "the cpp backend has CPU kernels only"
    return ""


def is_available(device):
    return not unavailable_reason(device)


def isa():
    """The variant of the kernels in use ("default", "avx2", "avx512" or "native"); "" when none is loaded."""
    return _ISA


def variant(device):
    """The variant of the kernels that runs on ``device`` (the one loaded, on CPU); "" where none can run."""
    return "" if unavailable_reason(device) else _ISA


def fast_bf16():
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), so bf16 tiles pay off."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


BF16_GEMM_ENV_VAR = "ARL_FAST_BF16_GEMM"  # "mkl": the bf16 tiles through MKL even where the micro-kernel runs


def bf16_products():
    """What multiplies the kernels' bf16 tiles: "avx512_bf16" (the kernels' own micro-kernel, on CPUs with
    AVX512-BF16 and no AMX), "mkl" (MKL's bf16 gemm: AMX where the CPU has it) or "" (no kernels loaded, or bf16
    computed in float32 on this CPU)."""
    if not _ISA or not fast_bf16():
        return ""
    return torch.ops.arl_fast.cpp_bf16_gemm_implementation()


def _operands(z1, z2):
    """Inputs in a dtype the kernels take: half, and bf16 without native bf16 instructions, run in float32."""
    if z1.dtype == torch.float16 or (z1.dtype == torch.bfloat16 and not fast_bf16()):
        z1, z2 = z1.float(), z2.float()
    return z1.contiguous(), z2.contiguous()


def _stats_size(B, T, first_level, num_levels):
    """Length of the row statistics the forward returns: a maximum and a log-sum per row of every term."""
    return sum(8 * B * (T >> level) for level in range(first_level, first_level + num_levels))


def _loss_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


if not _LOAD_ERROR:

    @torch.library.register_fake("arl_fast::cpp_level_losses")
    def _level_losses_fake(z1, z2, first_level, num_levels, alpha, temporal_unit):
        dtype = _loss_dtype(z1.dtype)
        stats = z1.new_empty(_stats_size(z1.shape[0], z1.shape[1], first_level, num_levels), dtype=dtype)
        return z1.new_empty(num_levels, dtype=dtype), stats

    @torch.library.register_fake("arl_fast::cpp_level_losses_backward")
    def _level_losses_backward_fake(grad_losses, z1, z2, row_stats, first_level, num_levels, alpha, temporal_unit):
        return torch.empty_like(z1), torch.empty_like(z2)

    def _setup_context(ctx, inputs, output):
        z1, z2, first_level, num_levels, alpha, temporal_unit = inputs
        ctx.save_for_backward(z1, z2, output[1])
        ctx.args = (first_level, num_levels, alpha, temporal_unit)

    def _backward(ctx, grad_losses, grad_stats):
        z1, z2, row_stats = ctx.saved_tensors
        dz1, dz2 = torch.ops.arl_fast.cpp_level_losses_backward(grad_losses.contiguous(), z1, z2, row_stats, *ctx.args)
        return dz1, dz2, None, None, None, None

    torch.library.register_autograd("arl_fast::cpp_level_losses", _backward, setup_context=_setup_context)


def _level_losses(z1, z2, first_level, num_levels, alpha, temporal_unit):
    z1, z2 = _operands(z1, z2)
    return torch.ops.arl_fast.cpp_level_losses(z1, z2, first_level, num_levels, alpha, temporal_unit)[0]


def level_loss(z1, z2, level, alpha, temporal_unit):
    return _level_losses(z1, z2, level, 1, alpha, temporal_unit)[0]


def all_level_losses(z1, z2, alpha, temporal_unit):
    return _level_losses(z1, z2, 0, z1.shape[1].bit_length(), alpha, temporal_unit)
