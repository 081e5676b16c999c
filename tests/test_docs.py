"""The README's and docs/'s examples run as written, so the documentation cannot drift from the API.

- Every ```python block of README.md and docs/*.md runs.  The blocks of one page run in order in one namespace
  (a later block may use what an earlier one defined), in a temporary folder.  A block preceded by the line
  ``<!-- not run: REASON -->`` is skipped; keep that for what cannot run here (a GPU, several processes).
- Small-data mode: the loaders the examples call (``load_uea``, ``load_forecast_csv``, ``load_nab``) return
  small synthetic data of the same kind through the real parsing code where there is some, and ``TS2Vec.fit``
  trains at most 2 iterations per call.  Everything else is the real package: a renamed function, argument or
  attribute fails here.
- Every ``arl-fast ...`` (or ``python -m arl_fast ...``) line of a bash block is parsed by the command's own
  argument parser (not run), so a renamed option fails too.
- Relative links between the pages point at files that exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import arl_fast
import arl_fast.data
import arl_fast.data.forecast
import arl_fast.data.uea
from arl_fast import TS2Vec

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"<!--\s*not run:.*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
MAX_ITERS = 2


def blocks(page: Path, language: str) -> list[tuple[int, str, bool]]:
    """``(first line number, code, skipped)`` of every fenced block of ``language`` in ``page``."""
    found, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match and match.group(1):
            end = i + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if match.group(1) == language:
                skipped = i > 0 and bool(SKIP.search(lines[i - 1]))
                found.append((i + 2, "\n".join(lines[i + 1 : end]), skipped))
            i = end
        i += 1
    return found


# ------------------------------------------------------------------------------------------- small data


def small_uea(name, data_dir=None, download=True):
    """Two classes of 24 univariate series of 96 steps (sine vs square-ish waves), in load_uea's shapes."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4 * np.pi, 96, dtype=np.float32)

    def split(n):
        y = np.arange(n) % 2
        X = np.where(y[:, None] == 0, np.sin(t), np.tanh(4 * np.sin(t)))[:, :, None]
        return (X + 0.1 * rng.standard_normal(X.shape)).astype(np.float32), y

    X_train, y_train = split(24)
    X_test, y_test = split(24)
    return arl_fast.data.uea.UEADataset(X_train, y_train, X_test, y_test, np.array(["a", "b"]))


def small_forecast(tmp_path):
    """load_forecast_csv on a 720-step hourly CSV with ETT's columns (60/20/20 splits), horizons 4 and 8."""
    real = arl_fast.data.forecast.load_forecast_csv

    def load(path, target=None, **kwargs):
        csv = tmp_path / "small.csv"
        if not csv.exists():
            rng = np.random.default_rng(0)
            hours = np.arange(720)
            dates = np.datetime64("2016-07-01T00:00") + hours.astype("timedelta64[h]")
            columns = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
            values = [np.sin(2 * np.pi * hours / 24 + i) + 0.1 * rng.standard_normal(len(hours))
                      for i in range(len(columns))]
            rows = [",".join(["date", *columns])]
            rows += [",".join([str(d).replace("T", " "), *(f"{v[k]:.4f}" for v in values)])
                     for k, d in enumerate(dates)]
            csv.write_text("\n".join(rows) + "\n")
        kwargs.setdefault("horizons", [4, 8])
        return real(csv, target, **kwargs)

    return load


def small_nab(data_dir=None):
    """Three 600-point series with a spike each in their second half (one unlabelled), as load_nab returns."""
    rng = np.random.default_rng(0)
    values, labels = [], []
    for i in range(3):
        x = np.sin(np.arange(600) / (5 + i)) + 0.05 * rng.standard_normal(600)
        label = np.zeros(600, dtype=int)
        if i < 2:
            x[450 + 20 * i] += 6
            label[445 + 20 * i : 460 + 20 * i] = 1
        values.append(x)
        labels.append(label)
    return arl_fast.data.anomaly_dataset(values, labels, name="NAB")


@pytest.fixture
def small_data(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    forecast = small_forecast(tmp_path)
    for module in (arl_fast, arl_fast.data, arl_fast.data.uea):
        monkeypatch.setattr(module, "load_uea", small_uea)
    for module in (arl_fast, arl_fast.data, arl_fast.data.forecast):
        monkeypatch.setattr(module, "load_forecast_csv", forecast)
    for module in (arl_fast, arl_fast.data):
        monkeypatch.setattr(module, "load_nab", small_nab)
    fit = TS2Vec.fit

    def short_fit(self, X, n_epochs=None, n_iters=None, *args, **kwargs):
        cap = self.n_iters + MAX_ITERS
        return fit(self, X, n_epochs, cap if n_iters is None else min(n_iters, cap), *args, **kwargs)

    monkeypatch.setattr(TS2Vec, "fit", short_fit)


# ------------------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_blocks_run(page, small_data):
    runnable = [(line, code) for line, code, skipped in blocks(page, "python") if not skipped]
    namespace = {"__name__": "__docs__"}
    for line, code in runnable:
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"{page.relative_to(ROOT)}, the block at line {line} fails: "
                                 f"{type(error).__name__}: {error}") from error


def command_lines(page: Path):
    """Each ``arl-fast`` / ``python -m arl_fast`` command of the page's bash blocks: (line, argv after the
    program), continuation lines joined."""
    for first, code, _ in blocks(page, "bash"):
        joined, start = "", first
        for offset, text in enumerate(code.splitlines()):
            if not joined:
                start = first + offset
            if text.rstrip().endswith("\\"):
                joined += text.rstrip()[:-1] + " "
                continue
            words, joined = shlex.split(joined + text, comments=True), ""
            for command in " ".join(words).split("&&"):
                argv = command.split()
                if "arl-fast" in argv:
                    yield start, argv[argv.index("arl-fast") + 1 :]
                elif "arl_fast" in argv and argv[argv.index("arl_fast") - 1] == "-m":
                    yield start, argv[argv.index("arl_fast") + 1 :]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_commands_parse(page):
    from arl_fast.cli import build_parser

    parser = build_parser()
    known = set(next(a for a in parser._actions if a.dest == "command").choices)
    for line, argv in command_lines(page):
        if not argv or argv[0] not in known:
            assert not argv or argv[0] == "info", f"{page.name}:{line}: unknown command arl-fast {' '.join(argv)}"
            continue  # `arl-fast info` is documented before every checkout has it
        try:
            parser.parse_args(argv)
        except SystemExit as error:
            raise AssertionError(f"{page.name}:{line}: arl-fast {' '.join(argv)} does not parse") from error


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_exist(page):
    for target in LINK.findall(page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to a missing {target}"


def test_readme_is_short_and_opens_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 160
    commands = [code for _, code, _ in blocks(ROOT / "README.md", "bash")][:2]
    assert commands[0].endswith("arl-fast compare") and commands[1].endswith("python -m pytest")
    assert [p.name for p in PAGES[1:]] == sorted(["adaptive.md", "backends.md", "benchmarks.md", "tasks.md",
                                                   "training.md"])
