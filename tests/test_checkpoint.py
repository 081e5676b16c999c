"""A training run killed (SIGKILL) or interrupted (SIGINT: Ctrl-C; SIGTERM: a scheduler or a preempted node) after
its second checkpoint resumes with ``--resume`` to exactly the model an uninterrupted run of the same seed trains
(CPU determinism)."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from arl_fast.cli import main

EPOCHS = 12
TRAIN = ["train", "--dataset", "BasicMotions", "--seed", "3", "--repr-dims", "16", "--hidden-dims", "16",
         "--depth", "2", "--threads", "1", "--device", "cpu", "--quiet", "--checkpoint-every", "1"]
REPO = Path(__file__).resolve().parents[1]


def epochs_in(path: Path) -> int:
    if not path.exists():
        return 0
    return torch.load(path, map_location="cpu", weights_only=True)["n_epochs"]  # replaced atomically: never torn


def assert_same_state(path: Path, reference: dict):
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert (state["n_epochs"], state["n_iters"]) == (reference["n_epochs"], reference["n_iters"]) == (EPOCHS, 60)
    assert state["loss_log"] == reference["loss_log"]
    for part in ("net", "averaged"):
        for key, value in reference[part].items():
            assert torch.equal(state[part][key], value), f"{part}.{key} differs"
    for key, value in reference["optimizer"]["state"].items():
        for name, tensor in value.items():
            assert torch.equal(state["optimizer"]["state"][key][name], tensor)


@pytest.fixture(scope="module")
def interrupted_runs(tmp_path_factory):
    """Start a SIGKILL, a SIGINT and a SIGTERM run side by side, train the uninterrupted reference meanwhile, then signal
    each run once its second checkpoint is on disk."""
    folder = tmp_path_factory.mktemp("interrupted")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    runs = {}
    for sig in (signal.SIGKILL, signal.SIGINT, signal.SIGTERM):
        path = folder / sig.name / "model.pt"
        path.parent.mkdir()
        command = [sys.executable, "-m", "arl_fast", *TRAIN, "--epochs", str(EPOCHS), "--out", str(path)]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs[sig] = {"path": path, "process": process}
    reference = folder / "reference.pt"  # trained meanwhile, in a thread of this process
    status = []
    thread = threading.Thread(target=lambda: status.append(main([*TRAIN, "--epochs", str(EPOCHS), "--out",
                                                                   str(reference)])))
    thread.start()
    try:
        deadline = time.monotonic() + 240
        pending = {signal.SIGKILL, signal.SIGINT, signal.SIGTERM}
        while pending:
            assert time.monotonic() < deadline, "the runs did not reach their second checkpoint in 240 s"
            for sig in list(pending):
                run = runs[sig]
                if run["process"].poll() is not None:
                    pytest.fail(f"run exited ({run['process'].returncode}) before its second checkpoint: "
                                f"{run['process'].stderr.read()}")
                if epochs_in(run["path"]) >= 2:
                    run["process"].send_signal(sig)
                    pending.discard(sig)
            time.sleep(0.02)
        for sig in runs:
            _, runs[sig]["stderr"] = runs[sig]["process"].communicate(timeout=120)
            runs[sig]["returncode"] = runs[sig]["process"].returncode
    finally:
        for run in runs.values():
            if run["process"].poll() is None:
                run["process"].kill()
                run["process"].wait()
        thread.join(timeout=240)
    assert status == [0]
    runs["reference"] = torch.load(reference, map_location="cpu", weights_only=True)
    return runs


@pytest.fixture(scope="module")
def reference(interrupted_runs):
    """The checkpoint of the same run left alone."""
    return interrupted_runs["reference"]


def test_sigkill_after_the_second_checkpoint_then_resume(interrupted_runs, reference):
    run = interrupted_runs[signal.SIGKILL]
    assert run["returncode"] == -signal.SIGKILL
    assert 2 <= epochs_in(run["path"]) < EPOCHS
    assert main([*TRAIN, "--resume", str(run["path"]), "--epochs", str(EPOCHS)]) == 0
    assert_same_state(run["path"], reference)


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_writes_a_checkpoint_exits_128_plus_it_then_resumes(interrupted_runs, reference, sig, status):
    run = interrupted_runs[sig]
    assert run["returncode"] == status, run["stderr"]
    assert f"interrupted ({sig.name})" in run["stderr"] and "Traceback" not in run["stderr"]
    state = torch.load(run["path"], map_location="cpu", weights_only=True)
    assert 2 <= state["n_epochs"] < EPOCHS and state["n_iters"] >= 10
    assert os.listdir(run["path"].parent) == ["model.pt"]  # the interrupted write left no temporary file
    assert main([*TRAIN, "--out", str(run["path"]), "--resume", "--epochs", str(EPOCHS)]) == 0
    assert_same_state(run["path"], reference)
