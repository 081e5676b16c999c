"""Builds the C++ extension against the torch already installed (use ``--no-build-isolation``).

The CPU kernels are compiled once per instruction set, each variant its own module (``csrc/variants/``), so that one
build or wheel runs on any CPU of its architecture at the best speed that CPU has: on x86-64 ``arl_fast._C_default``
(the baseline x86-64 target), ``_C_avx2`` (AVX2 + FMA) and ``_C_avx512`` (AVX-512 F/BW/VL/DQ, as PyTorch's own
AVX512 kernels); elsewhere (e.g. aarch64) ``_C_default`` only.  ``arl_fast.backends.cpp`` imports the best one the
CPU runs, once, at import.  ``ARL_FAST_MARCH=native`` (or any ``-march`` value) builds one module ``_C_native`` for
that target instead, which only runs on CPUs like the build machine.

Where it cannot be built (no torch at build time, no compiler) the package installs without it, with a warning,
and the loss falls back to the reference; ``ARL_FAST_REQUIRE_EXT=1`` makes that an error instead.
"""

import os
import platform
import sys

from setuptools import setup

REQUIRE = os.environ.get("ARL_FAST_REQUIRE_EXT") == "1"
MARCH = os.environ.get("ARL_FAST_MARCH", "")
COMMON_ARGS = ["-O3", "-fopenmp", "-std=c++20"]
KERNEL_SOURCES = ["csrc/ops.cpp", "csrc/cpu/bf16_gemm.cpp", "csrc/cpu/contrastive_loss.cpp"]  # included by every csrc/variants/*.cpp
X86_VARIANTS = {  # variant: compiler flags; the CPU_CAPABILITY macros select at::vec's kernels and namespace
    "default": ["-DCPU_CAPABILITY=DEFAULT"],
    "avx2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"],
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c",
               "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"],
}


def variants():
    """{variant: extra compiler flags} of the modules to build on this machine."""
    if MARCH:
        return {"native": [f"-march={MARCH}"]}
    if platform.machine().lower() in ("x86_64", "amd64"):
        return X86_VARIANTS
    return {"default": ["-DCPU_CAPABILITY=DEFAULT"]}


def _without_extension(reason):
    if REQUIRE:
        raise RuntimeError(f"ARL_FAST_REQUIRE_EXT=1 but the C++ extension of arl_fast cannot be built: {reason}")
    print(f"WARNING: building arl_fast without (part of) its C++ extension ({reason}); where no variant is built "
          "the 'cpp' backend is unavailable and the loss falls back to the reference", file=sys.stderr)
    return {}


def _extension_options():
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as error:
        return _without_extension(f"torch is not importable at build time ({error}); install torch first and "
                                  "the package with pip's --no-build-isolation")

    class TolerantBuildExtension(BuildExtension):
        """Builds the variants side by side (one compiler process each: torch's ninja path writes one build.ninja per
        build folder, which parallel extensions would share); a variant that fails to compile is left out with a
        warning (the loader takes the next one down) unless ARL_FAST_REQUIRE_EXT=1."""

        def finalize_options(self):
            super().finalize_options()
            if self.parallel is None:
                self.parallel = min(len(self.extensions), os.cpu_count() or 1)

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as error:  # compiler missing, or too old for these flags
                if REQUIRE:
                    raise
                _without_extension(f"compiling {ext.name} failed: {error}")

    extensions = [
        CppExtension(f"arl_fast._C_{name}", [f"csrc/variants/{name}.cpp"], depends=KERNEL_SOURCES,
                     extra_compile_args=COMMON_ARGS + flags, extra_link_args=["-fopenmp"])
        for name, flags in variants().items()
    ]
    return {"ext_modules": extensions, "cmdclass": {"build_ext": TolerantBuildExtension.with_options(use_ninja=False)}}


setup(**_extension_options())
