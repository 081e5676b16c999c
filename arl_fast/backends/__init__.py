"""Which loss implementations exist, which can run here, and what ``backend="auto"`` means."""

import importlib
import os

import torch

# name -> module implementing is_available, unavailable_reason, level_loss, all_level_losses
_BACKEND_MODULES = {
    "reference": "arl_fast.backends.reference",
    "triton": "arl_fast.backends.triton",
    "cpp": "arl_fast.backends.cpp",
}
# "auto" tries these in order, per device type; other devices use the reference.
_AUTO_ORDER = {"cuda": ("triton", "reference"), "cpu": ("cpp", "reference")}
ENV_VAR = "ARL_FAST_BACKEND"


def _import(path):
    try:
        return importlib.import_module(path)
    except ImportError:  # e.g. Triton is not installed on this platform
        return None


# Imported once, up front, so that torch.compile can trace through the dispatch without tracing an import.
_MODULES = {name: _import(path) for name, path in _BACKEND_MODULES.items()}


def _module(name):
    return _MODULES[name]


def _devices():
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices


def available_backends():
    """Names of the backends that can run in this process for at least one device it has."""
    names = []
    for name in _BACKEND_MODULES:
        module = _module(name)
        if module is not None and any(module.is_available(d) for d in _devices()):
            names.append(name)
    return names


def _check_name(name, argument):
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a string, got {type(name).__name__}")
    if name != "auto" and name not in _BACKEND_MODULES:
        choices = ", ".join(["auto", *available_backends()])
        raise ValueError(f"unknown {argument} {name!r}; available: {choices}")


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
        order = _AUTO_ORDER.get(device.type, ("reference",))
        for candidate in order:
            module = _module(candidate) if candidate in _BACKEND_MODULES else None
            if module is not None and module.is_available(device):
                return candidate
        return "reference"
    module = _module(name)
    if module is None:
        raise ValueError(f"backend {name!r} cannot be imported in this process; available: {', '.join(available_backends())}")
    if not module.is_available(device):
        raise ValueError(f"backend {name!r} cannot run on {device}: {module.unavailable_reason(device)}")
    return name


def backend_module(name):
    """The implementation module of a resolved backend name."""
    return _module(name)
