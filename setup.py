"""Builds the C++ extension ``arl_fast._C`` against the torch already installed (use ``--no-build-isolation``).

Where it cannot be built (no torch at build time, no compiler) the package installs without it, with a warning,
and the loss falls back to the reference; ``ARL_FAST_REQUIRE_EXT=1`` makes that an error instead.
``ARL_FAST_MARCH`` sets ``-march`` (default ``native``: the build machine's vector ISA; ``""`` for none).
"""

import os
import sys
from pathlib import Path

from setuptools import setup

REQUIRE = os.environ.get("ARL_FAST_REQUIRE_EXT") == "1"
SOURCES = sorted(str(p) for p in Path("csrc").rglob("*.cpp") if "cuda" not in p.parts)


def _without_extension(reason):
    if REQUIRE:
        raise RuntimeError(f"ARL_FAST_REQUIRE_EXT=1 but the C++ extension arl_fast._C cannot be built: {reason}")
    print(f"WARNING: building arl_fast without its C++ extension ({reason}); the 'cpp' backend will be "
          "unavailable and the loss falls back to the reference", file=sys.stderr)
    return {}


def _extension_options():
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as error:
        return _without_extension(f"torch is not importable at build time ({error}); install torch first and "
                                  "the package with pip's --no-build-isolation")

    class TolerantBuildExtension(BuildExtension):
        """Turns a failed compile into a warning unless ARL_FAST_REQUIRE_EXT=1."""

        def run(self):
            try:
                super().run()
            except Exception as error:  # compiler missing or failing: install the pure-Python package
                if REQUIRE:
                    raise
                _without_extension(f"compiling failed: {error}")

    march = os.environ.get("ARL_FAST_MARCH", "native")
    compile_args = ["-O3", "-fopenmp", "-std=c++20"] + ([f"-march={march}"] if march else [])
    extension = CppExtension("arl_fast._C", SOURCES, extra_compile_args=compile_args, extra_link_args=["-fopenmp"])
    return {"ext_modules": [extension], "cmdclass": {"build_ext": TolerantBuildExtension.with_options(use_ninja=True)}}


setup(**_extension_options())
