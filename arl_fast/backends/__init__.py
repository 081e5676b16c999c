"""Which loss implementations exist, which can run here, and what ``backend="auto"`` means.

``"auto"`` picks the fastest backend that runs on the tensors' device; the choice is cached per device, as it is
made on every training step.  Where a fast backend exists for the device (cpp on CPU, Triton on CUDA) but cannot
run in this process, ``"auto"`` uses the reference and warns once per device, naming why and the fix; asking for
the reference (``backend="reference"`` or ``ARL_FAST_BACKEND=reference``) never warns, and
``ARL_FAST_REQUIRE_EXT=1`` turns a missing C++ extension into an error at import.
"""

import importlib
import os
import sys
import warnings

import torch

# name -> module implementing is_available, unavailable_reason, level_loss, all_level_losses (and, but for the
# reference, variant)
_BACKEND_MODULES = {
    "reference": "arl_fast.backends.reference",
    "cpp": "arl_fast.backends.cpp",
    "triton": "arl_fast.backends.triton",
}
# "auto" tries these in order, per device type, then the reference; other device types have only the reference.
_FAST = {"cuda": ("triton",), "cpu": ("cpp",)}
ENV_VAR = "ARL_FAST_BACKEND"
_FIX_HINT = "`arl-fast info` shows what runs here; ARL_FAST_BACKEND=reference silences this warning."
# Frames a fallback warning looks past for the line to blame: this package's and torch's.
_SKIPPED_DIRS = (os.path.dirname(os.path.dirname(__file__)) + os.sep, os.path.dirname(torch.__file__) + os.sep)


def _import(path):
    """(module, "") or (None, why it cannot be imported)."""
    try:
        return importlib.import_module(path), ""
    except ImportError as error:
        return None, f"{path} cannot be imported ({error})"


# Imported once, up front, so that torch.compile can trace through the dispatch without tracing an import.
_IMPORTS = {name: _import(path) for name, path in _BACKEND_MODULES.items()}
_MODULES = {name: module for name, (module, _) in _IMPORTS.items()}

_auto_choices = {}  # torch.device -> what "auto" picks there (ARL_FAST_BACKEND aside)
_warned = set()  # (device type, index) already warned about a fallback to the reference


def _module(name):
    return _MODULES[name]


def _devices():
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices


def backend_names():
    """Every backend the package has, built here or not."""
    return list(_BACKEND_MODULES)


def unavailable_reason(name, device):
    """Why backend ``name`` cannot run on ``device`` in this process, or "" when it can."""
    _check_name(name, "name", allow_auto=False)
    module, import_error = _IMPORTS[name]
    return import_error if module is None else module.unavailable_reason(torch.device(device))


def available_backends():
    """Names of the backends that can run in this process for at least one device it has."""
    return [name for name in _BACKEND_MODULES if any(not unavailable_reason(name, d) for d in _devices())]


def _check_name(name, argument, allow_auto=True):
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a string, got {type(name).__name__}")
    if (name != "auto" or not allow_auto) and name not in _BACKEND_MODULES:
        choices = ", ".join((["auto"] if allow_auto else []) + available_backends())
        raise ValueError(f"unknown {argument} {name!r}; available: {choices}")


def auto_choice(device):
    """(backend, passed_over): what ``"auto"`` picks on ``device`` without ``ARL_FAST_BACKEND``, and the faster
    backends it passed over as (name, why it cannot run) pairs.  Warns about nothing."""
    device = torch.device(device)
    passed_over = []
    for candidate in _FAST.get(device.type, ()):
        reason = unavailable_reason(candidate, device)
        if not reason:
            return candidate, passed_over
        passed_over.append((candidate, reason))
    return "reference", passed_over


def _warn_fallback(device, passed_over):
    """Warn, once per device, that "auto" lost the fast kernels there, naming why and how to fix it."""
    index = device.index
    if device.type == "cuda" and index is None and torch.cuda.is_available():
        index = torch.cuda.current_device()
    if (device.type, index) in _warned:
        return
    _warned.add((device.type, index))
    why = "; ".join(f"the {name} backend cannot run here: {reason}" for name, reason in passed_over)
    warnings.warn(f"arl_fast: backend='auto' computes the loss on {device} with the reference, which is slower "
                  f"and holds O(T^2) memory per level: {why}\n{_FIX_HINT}", UserWarning,
                  stacklevel=_caller_stacklevel())


def _caller_stacklevel():
    """The ``stacklevel`` that points a warning issued from ``_warn_fallback`` at the first caller outside arl_fast
    and torch (the user's line, however deep in the package, or in torch.compile's tracing, the choice was made)."""
    frame, level = sys._getframe(2), 2  # _warn_fallback's frame is level 1
    while frame is not None and frame.f_code.co_filename.startswith(_SKIPPED_DIRS):
        frame, level = frame.f_back, level + 1
    return level


@torch.compiler.assume_constant_result  # torch.compile runs it while tracing, warning included, and keeps the name
def _resolve_auto(device):
    """What "auto" picks on ``device``, cached; warns once per device where it falls back to the reference."""
    choice = _auto_choices.get(device)
    if choice is None:
        choice, passed_over = auto_choice(device)
        if choice == "reference" and passed_over:
            _warn_fallback(device, passed_over)
        _auto_choices[device] = choice
    return choice


def resolve_backend(name, device):
    """The concrete backend name for ``name`` on ``device``; ``ARL_FAST_BACKEND`` overrides ``"auto"``."""
    _check_name(name, "backend")
    device = torch.device(device)
    if name == "auto":
        override = os.environ.get(ENV_VAR)
        if override:
            _check_name(override, ENV_VAR)
            name = override
    if name == "auto":
        return _resolve_auto(device)
    reason = unavailable_reason(name, device)
    if reason:
        raise ValueError(f"backend {name!r} cannot run on {device}: {reason}")
    return name


def kernel_variant(name, device):
    """Which build of backend ``name``'s kernels runs on ``device``: the cpp ISA variant ("avx512", ...), the
    Triton target ("sm_90", "interpreter", ...), "pytorch" for the reference; "" where it cannot run."""
    _check_name(name, "name", allow_auto=False)
    device = torch.device(device)
    if unavailable_reason(name, device):
        return ""
    return "pytorch" if name == "reference" else _module(name).variant(device)


def backend_module(name):
    """The implementation module of a resolved backend name."""
    return _module(name)
