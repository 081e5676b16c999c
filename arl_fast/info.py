"""What this install of arl_fast can run, and why not: ``arl-fast info`` and the header of commands and benchmarks.

``report()`` gathers the versions, the CPU and GPUs, every backend on every device type here (whether it runs,
the variant of its kernels, or the backend's own reason why not) and what ``backend="auto"`` picks per device;
``format_report()`` makes that plain text for a bug report.  ``header()`` is the one line that heads every
table of timings, so that it always says which kernels produced it.
"""

import importlib.metadata
import os
import platform
from pathlib import Path

import torch

from . import __version__
from .backends import ENV_VAR, auto_choice, backend_names, kernel_variant, resolve_backend, unavailable_reason
from .backends import cpp

# Variables that change which kernels run, shown when set.
ENVIRONMENT = (ENV_VAR, cpp.ISA_ENV_VAR, cpp.REQUIRE_ENV_VAR, cpp.BF16_GEMM_ENV_VAR, "ATEN_CPU_CAPABILITY", "TRITON_INTERPRET",
               "CUDA_VISIBLE_DEVICES")


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _threads(count):
    return f"{count} thread" + ("" if count == 1 else "s")


def _device_types():
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpus():
    gpus = []
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        properties = torch.cuda.get_device_properties(index)
        gpus.append({"device": f"cuda:{index}", "name": properties.name,
                     "capability": f"{properties.major}.{properties.minor}",
                     "memory_GiB": round(properties.total_memory / 2**30, 1)})
    return gpus


def _auto(device):
    """What "auto" runs on ``device``, honouring ARL_FAST_BACKEND, without the fallback warning."""
    if _override():
        try:
            name = resolve_backend("auto", device)  # the override's backend, or its error naming ARL_FAST_BACKEND
        except ValueError as error:
            return {"backend": None, "error": str(error)}
        return {"backend": name, "variant": kernel_variant(name, device), "set_by": ENV_VAR}
    name, passed_over = auto_choice(device)
    return {"backend": name, "variant": kernel_variant(name, device), "passed_over": dict(passed_over)}


def report():
    """Everything ``arl-fast info`` says, as a JSON-ready dict."""
    devices = _device_types()
    return {
        "arl_fast": __version__,
        "location": str(Path(__file__).resolve().parent),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda or torch.version.hip,
        "triton": _version("triton"),
        "cpu": {
            "model": cpu_model(),
            "machine": platform.machine(),
            "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "cpp_variant": cpp.isa() or None,
            "cpp_built": cpp.built_variants(),
            "bf16_native": cpp.fast_bf16(),
            "bf16_products": cpp.bf16_products() or None,
        },
        "gpus": _gpus(),
        "backends": [
            {"device": device, "backend": name, "runs": not unavailable_reason(name, device),
             "variant": kernel_variant(name, device) or None, "reason": unavailable_reason(name, device) or None}
            for device in devices for name in backend_names()
        ],
        "auto": {device: _auto(device) for device in devices},
        "environment": {var: os.environ[var] for var in ENVIRONMENT if var in os.environ},
    }


BF16_PRODUCTS = {"avx512_bf16": "the kernels' AVX512-BF16 micro-kernel", "mkl": "MKL's bf16 gemm"}


def _bf16_text(cpu):
    if not cpu["bf16_native"]:
        return "computed in float32"
    text = "native (AVX512-BF16 or AMX)"
    return text + (f", tiles by {BF16_PRODUCTS[cpu['bf16_products']]}" if cpu["bf16_products"] else "")


def format_report(info):
    """``report()`` as the plain text ``arl-fast info`` prints."""
    cpu = info["cpu"]
    lines = [
        f"arl_fast {info['arl_fast']} at {info['location']}",
        f"Python {info['python']}, torch {info['torch']}"
        + (f" (CUDA/ROCm {info['cuda_runtime']})" if info["cuda_runtime"] else " (CPU only)")
        + f", Triton {info['triton'] or 'not installed'}",
        f"CPU: {cpu['model']} ({cpu['machine']}), torch capability {cpu['torch_capability']}, "
        f"{_threads(cpu['threads'])}",
        f"C++ kernels: {cpu['cpp_variant'] or 'none loaded'} (built: {', '.join(cpu['cpp_built']) or 'none'}); "
        "bfloat16: " + _bf16_text(cpu),
    ]
    lines += [f"GPU {gpu['device']}: {gpu['name']}, compute capability {gpu['capability']}, {gpu['memory_GiB']} GiB"
              for gpu in info["gpus"]] or ["GPU: none visible to torch"]
    lines.append("backends:")
    for entry in info["backends"]:
        state = f"runs ({entry['variant']})" if entry["runs"] else f"cannot run: {entry['reason']}"
        lines.append(f"  {entry['device']:<5} {entry['backend']:<10} {state}")
    for device, auto in info["auto"].items():
        if auto["backend"] is None:
            lines.append(f"auto on {device}: error: {auto['error']}")
            continue
        line = f"auto on {device}: {auto['backend']} ({auto['variant']})"
        if auto.get("set_by"):
            line += f", set by {auto['set_by']}"
        elif auto["passed_over"]:
            line += ", falling back: " + "; ".join(f"{name} cannot run" for name in auto["passed_over"])
        lines.append(line)
    if info["environment"]:
        lines.append("environment: " + ", ".join(f"{var}={value}" for var, value in info["environment"].items()))
    return "\n".join(lines)


def backend_summary(backend, device):
    """What a run with ``backend`` on ``device`` uses, e.g. "cpp (avx512)": the resolved backend and its kernel
    variant, and who chose it where that is not the code's ``backend`` (ARL_FAST_BACKEND, or "auto" settling for
    the reference because a faster backend cannot run).  ValueError when ``backend`` cannot run there."""
    device = torch.device(device)
    name = resolve_backend(backend, device)
    text = f"{name} ({kernel_variant(name, device)})"
    if backend != "auto":
        return text
    if _override():
        return f"{text}, set by {ENV_VAR}"
    passed_over = auto_choice(device)[1] if name == "reference" else []
    return text + "".join(f", as {skipped} cannot run here (arl-fast info says why)" for skipped, _ in passed_over)


def _override():
    """ARL_FAST_BACKEND's backend when it overrides "auto", else ""."""
    value = os.environ.get(ENV_VAR, "")
    return "" if value == "auto" else value


def header(device="cpu", backend="auto"):
    """The one line that heads a command's or a benchmark's output: versions, the hardware and threads, and the
    loss backend that ``backend`` runs on ``device`` with its kernel variant.  ValueError when it cannot run."""
    device = torch.device(device)
    if device.type == "cuda":
        hardware = f"GPU: {torch.cuda.get_device_name(device)}"
    else:
        hardware = f"CPU: {cpu_model()}, {_threads(torch.get_num_threads())}"
    return (f"arl_fast {__version__}, torch {torch.__version__}; {hardware}; "
            f"loss backend on {device}: {backend_summary(backend, device)}")
