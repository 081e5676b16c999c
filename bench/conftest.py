"""Shared benchmark helpers: a table of measured figures printed after the pytest-benchmark table."""

import pytest
import torch

from arl_fast.info import header

_ROWS = []


def machine_description():
    """One line naming the machine the figures were measured on and the loss backend "auto" runs there."""
    return header("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def bench_report():
    """Call with a dict of figures (name, shape, time, memory, ...) to add a row to the summary table."""
    return _ROWS.append


def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    keys = list(dict.fromkeys(k for row in _ROWS for k in row))
    widths = {k: max(len(k), *(len(_fmt(row.get(k, ""))) for row in _ROWS)) for k in keys}
    write = terminalreporter.write_line
    write("")
    write(f"measured on: {machine_description()}")
    write("  ".join(k.ljust(widths[k]) for k in keys))
    for row in _ROWS:
        write("  ".join(_fmt(row.get(k, "")).ljust(widths[k]) for k in keys))


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)
