"""``arl-fast info``, the header of commands and benchmarks, and the warning when ``backend="auto"`` loses the fast
kernels: in this install, and in processes where the C++ extension cannot be loaded."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from arl_fast import backends, info
from arl_fast.backends import backend_names, cpp, kernel_variant, resolve_backend, unavailable_reason
from arl_fast.cli import main

if not cpp.isa():
    raise RuntimeError(f"the C++ extension must be built for these tests: {cpp.unavailable_reason('cpu')}")

FALLBACK = "backend='auto' computes the loss on cpu with the reference"


def blocking(variants):
    """Source that makes the modules of ``variants`` unimportable in a fresh process, as if they were not built."""
    return "import sys\n" + "".join(f"sys.modules[{cpp.module_name(v)!r}] = None\n" for v in variants)


def run_python(script, tmp_path, **env_overrides):
    """Run ``script`` as a file in a fresh default Python session (no -W options, no ARL_FAST_* variables)."""
    path = tmp_path / "script.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARL_FAST_") and k != "PYTHONWARNINGS"}
    return subprocess.run([sys.executable, str(path)], env={**env, **env_overrides}, capture_output=True, text=True,
                          timeout=300, check=True)


@pytest.fixture
def fresh_auto(monkeypatch):
    """Forget what "auto" chose and warned about, so that a test sees its first resolution."""
    monkeypatch.setattr(backends, "_auto_choices", {})
    monkeypatch.setattr(backends, "_warned", set())
    monkeypatch.delenv(backends.ENV_VAR, raising=False)


def test_info_names_cpp_and_its_variant(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    variant = cpp.isa()
    assert f"cpp        runs ({variant})" in text
    assert f"auto on cpu: cpp ({variant})" in text
    bf16 = "native (AVX512-BF16 or AMX)" if cpp.fast_bf16() else "computed in float32"
    assert f"C++ kernels: {variant} (built: {', '.join(cpp.built_variants())}); bfloat16: {bf16}" in text
    if cpp.bf16_products():
        assert f"tiles by {info.BF16_PRODUCTS[cpp.bf16_products()]}" in text
    assert f"torch {torch.__version__}" in text and info.cpu_model() in text
    assert "triton" in text and "reference  runs (pytorch)" in text


def test_info_json_matches_the_registry(capsys):
    assert main(["info", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    expected = [(device, name) for device in devices for name in backend_names()]
    assert [(entry["device"], entry["backend"]) for entry in found["backends"]] == expected
    for entry in found["backends"]:
        reason = unavailable_reason(entry["backend"], entry["device"])
        assert entry["runs"] == (not reason) and entry["reason"] == (reason or None)
        assert entry["variant"] == (kernel_variant(entry["backend"], entry["device"]) or None)
    assert found["cpu"]["cpp_variant"] == cpp.isa() and found["cpu"]["bf16_native"] == cpp.fast_bf16()
    assert found["cpu"]["bf16_products"] == (cpp.bf16_products() or None)
    assert found["auto"]["cpu"]["backend"] == resolve_backend("auto", "cpu")
    assert set(found["auto"]) == set(devices)


def test_info_reports_an_environment_override(monkeypatch, capsys):
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "auto on cpu: reference (pytorch), set by ARL_FAST_BACKEND" in text
    assert "environment: ARL_FAST_BACKEND=reference" in text
    monkeypatch.setenv(backends.ENV_VAR, "bogus")
    assert main(["info"]) == 0
    assert "auto on cpu: error: unknown ARL_FAST_BACKEND 'bogus'" in capsys.readouterr().out


def test_python_m_arl_fast_info(tmp_path):
    out = run_python("import runpy, sys\nsys.argv = ['arl_fast', 'info']\n"
                     "runpy.run_module('arl_fast', run_name='__main__')\n", tmp_path)
    assert f"cpp        runs ({cpp.isa()})" in out.stdout and "Warning" not in out.stderr


def test_kernel_variant_and_reasons():
    assert kernel_variant("cpp", "cpu") == cpp.isa()
    assert kernel_variant("reference", "cpu") == "pytorch"
    assert kernel_variant("cpp", "meta") == "" and "CPU" in unavailable_reason("cpp", "meta")
    with pytest.raises(ValueError, match="unknown name 'auto'"):
        kernel_variant("auto", "cpu")
    with pytest.raises(ValueError, match="unknown name 'nope'"):
        unavailable_reason("nope", "cpu")
    with pytest.raises(TypeError, match="name must be a string"):
        kernel_variant(None, "cpu")


def test_header_names_the_backend_and_variant(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    line = info.header("cpu")
    assert line.startswith(f"arl_fast {info.__version__}, torch {torch.__version__}; CPU: {info.cpu_model()}")
    assert line.endswith(f"loss backend on cpu: cpp ({cpp.isa()})")
    assert info.header("cpu", "reference").endswith("loss backend on cpu: reference (pytorch)")
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    assert info.header("cpu").endswith("reference (pytorch), set by ARL_FAST_BACKEND")
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        info.header("cpu", "fast")


def test_auto_is_resolved_once_per_device(monkeypatch, fresh_auto):
    calls = []
    choose = backends.auto_choice
    monkeypatch.setattr(backends, "auto_choice", lambda device: calls.append(device) or choose(device))
    for _ in range(3):
        assert resolve_backend("auto", "cpu") == "cpp"
    assert resolve_backend("auto", "meta") == "reference"
    assert calls == [torch.device("cpu"), torch.device("meta")]


def test_fallback_warns_once_per_device_and_never_for_the_reference(monkeypatch, fresh_auto):
    monkeypatch.setattr(cpp, "_LOAD_ERROR", "simulated: no variant built; reinstall: pip install ...")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # only arl_fast's own once-per-device rule can hold repeats back
        assert resolve_backend("reference", "cpu") == "reference"
        monkeypatch.setenv(backends.ENV_VAR, "reference")
        assert resolve_backend("auto", "cpu") == "reference"
        assert resolve_backend("auto", "meta") == "reference"  # the reference is the only implementation there
        assert caught == []
        monkeypatch.delenv(backends.ENV_VAR)
        assert resolve_backend("auto", "cpu") == "reference"
        assert resolve_backend("auto", "cpu") == "reference"
        assert resolve_backend("auto", torch.device("cpu")) == "reference"
    assert len(caught) == 1 and caught[0].category is UserWarning
    message = str(caught[0].message)
    assert "the cpp backend cannot run here: simulated: no variant built" in message
    assert "arl-fast info" in message and "ARL_FAST_BACKEND=reference" in message
    assert caught[0].filename == __file__  # blamed on the caller, not on arl_fast


# A fresh process whose C++ extension cannot be loaded: the loss, the warning as a default session shows it, info.
MISSING_SCRIPT = """
import torch, arl_fast
from arl_fast.backends import reference
z1, z2 = torch.randn(4, 16, 3, dtype=torch.float64), torch.randn(4, 16, 3, dtype=torch.float64)
expected = reference.all_level_losses(z1, z2, 0.5, 0)
assert torch.equal(arl_fast.resolution_losses(z1, z2, backend="reference"), expected)
print("explicit reference done", file=sys.stderr, flush=True)
assert torch.equal(arl_fast.resolution_losses(z1, z2), expected)  # the first "auto" call
assert torch.equal(arl_fast.hierarchical_contrastive_loss(z1, z2), expected.mean())
from arl_fast.cli import main
main(["info"])
"""


def test_without_the_extension_auto_warns_once_and_computes_the_reference(tmp_path):
    script = blocking(cpp.VARIANTS) + MISSING_SCRIPT
    out = run_python(script, tmp_path)
    before, after = out.stderr.split("explicit reference done\n")
    assert FALLBACK not in before
    assert after.count(FALLBACK) == 1 and after.count("UserWarning") == 1
    first_auto = next(i for i, line in enumerate(script.splitlines(), 1) if 'the first "auto" call' in line)
    assert after.startswith(f"{tmp_path / 'script.py'}:{first_auto}: UserWarning")  # the user's line
    assert "not built); reinstall with a C++ compiler: pip install --no-build-isolation -e ." in after
    assert "C++ kernels: none loaded (built: none)" in out.stdout
    assert "cpp        cannot run: no C++ extension of arl_fast that this CPU runs can be loaded" in out.stdout
    assert "auto on cpu: reference (pytorch), falling back: cpp cannot run" in out.stdout


def test_without_the_extension_a_reference_session_is_silent(tmp_path):
    out = run_python(blocking(cpp.VARIANTS) + MISSING_SCRIPT, tmp_path, ARL_FAST_BACKEND="reference")
    assert "UserWarning" not in out.stderr and "set by ARL_FAST_BACKEND" in out.stdout


def test_without_the_extension_a_compiled_first_call_warns_at_the_users_line(tmp_path):
    script = blocking(cpp.VARIANTS) + (
        "import torch, arl_fast\n"
        "loss = torch.compile(lambda a, b: arl_fast.hierarchical_contrastive_loss(a, b), fullgraph=True, "
        "backend='eager')\n"
        "z = torch.randn(2, 8, 3)\n"
        "assert torch.equal(loss(z, z), arl_fast.hierarchical_contrastive_loss(z, z, backend='reference'))\n"
        "assert torch.equal(loss(z, z), arl_fast.hierarchical_contrastive_loss(z, z))\n"
    )
    out = run_python(script, tmp_path)
    assert out.stderr.count(FALLBACK) == 1
    assert out.stderr.startswith(f"{tmp_path / 'script.py'}:{len(script.splitlines()) - 1}: UserWarning")


@pytest.mark.skipif(cpp.built_variants() == ["default"], reason="only the default variant is built, which no "
                    "ARL_FAST_ISA value rules out")
def test_an_isa_override_that_rules_out_every_built_variant_is_named(tmp_path):
    best = cpp.built_variants()[-1]
    script = blocking(v for v in cpp.VARIANTS if v != best) + (
        "from arl_fast.cli import main\n"
        "main(['info'])\n"
    )
    out = run_python(script, tmp_path, ARL_FAST_ISA="default")
    assert (f"cpp        cannot run: the C++ extension is built only in variants that ARL_FAST_ISA=default rules "
            f"out ({best}): unset it") in out.stdout
