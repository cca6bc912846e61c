"""The shared CLI layer hides native log lines even while a rich progress display owns the terminal."""

from __future__ import annotations

import io
import sys

from rich.console import Console
from rich.progress import Progress

from fedpa.cli_common import quiet_dependencies


def _native_tokens() -> None:
    """How ExecuTorch's bindings write a log line: token by token, flushing after each."""
    for token in ("[", "cpuinfo_utils.cpp", ":", "71", "] ", "Reading file /sys/devices/soc0/image_version", "\n"):
        sys.stderr.write(token)
        sys.stderr.flush()


def test_native_lines_are_dropped_inside_a_live_display_and_fedpa_lines_kept():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)

    with quiet_dependencies(False), Progress(console=console, transient=True):
        _native_tokens()
        sys.stderr.write("kept: a line of our own\n")

    assert "cpuinfo_utils" not in screen.getvalue()
    assert "kept: a line of our own" in screen.getvalue()


def test_verbose_shows_them():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)

    with quiet_dependencies(True), Progress(console=console, transient=True):
        _native_tokens()

    assert "cpuinfo_utils.cpp" in screen.getvalue()
