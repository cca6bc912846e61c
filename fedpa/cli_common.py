"""What every FedPA command line shares: one ``error:`` line instead of a traceback, and quiet dependencies.

Why a click class rather than a decorator per command: every command of an app built with
:func:`make_app` (and every command a later change adds to it) gets the same treatment without
remembering to opt in, and so do the tests that drive an app through ``typer.testing.CliRunner``.

* Bad input — a usage error, a :class:`~fedpa.errors.FedPAError`, a pydantic validation error, a
  missing file — prints exactly one plain ``error: …`` line on stderr (never colour: scripts parse
  it) and exits non-zero (2 for usage errors, 1 otherwise). Anything else is a bug: it also prints
  one line, and ``--verbose`` shows its traceback.
* Libraries' chatter (torchao's missing kernels, torch's ``W1204 …`` log lines, ExecuTorch's native
  ``[cpuinfo_utils.cpp:71] …`` lines written straight to file descriptor 2) is hidden unless
  ``--verbose`` is given, so users see only FedPA's own lines.

Usage::

    app = make_app(help="…")            # instead of typer.Typer(help="…")
    single.command("demo", cls=FedPACommand)(demo)   # a one-command app
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import typer
from typer.core import TyperCommand, TyperGroup

from fedpa.errors import FedPAError

if TYPE_CHECKING:  # checked against the installed typer, which vendors click
    from typer._click import exceptions as click_exceptions
else:
    try:  # recent typer releases vendor click: theirs are the exceptions its commands raise
        from typer._click import exceptions as click_exceptions
    except ImportError:  # pragma: no cover - older typer uses the click package
        from click import exceptions as click_exceptions

__all__ = ["VERBOSE_FLAGS", "FedPACommand", "FedPAGroup", "error_message", "make_app", "quiet_dependencies",
           "setup_logging"]

VERBOSE_FLAGS = ("--verbose", "-v")
PROJECT_PACKAGES = ("fedpa", "edge", "export", "aggregator", "harness")
# Dependencies whose Python loggers warn about optional parts we do not use (torchao's CUDA kernels,
# triton, torchvision ops for the ONNX exporter). torch resets its own logger's level on import, so
# it is quieted through its documented TORCH_LOGS switch instead ("-torch": errors only).
NOISY_LOGGERS = ("torchao", "executorch", "onnxscript", "onnx_ir", "onnx", "onnxruntime", "matplotlib", "absl",
                 "dp_accounting", "jax", "urllib3")
# Native log lines (ExecuTorch's ET_LOG "[file.cpp:71] …" / "I 00:00:00.000 executorch:…", glog/c10 "W1204 …").
NATIVE_NOISE = re.compile(rb"^(\[[\w./-]+\.(?:cpp|cc|c|h|hpp):\d+\]|[DIWEF] ?\d{2}:\d{2}:\d{2}\.\d+ executorch:"
                          rb"|\[?[DIWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+ )")


def setup_logging(verbose: bool) -> None:
    """Root logging for a CLI run: INFO with ``--verbose``, else warnings (FedPA's own) only."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip()) or "(no message)"


def error_message(exc: BaseException) -> tuple[str, int] | None:
    """``(one-line message, exit code)`` for an error caused by the user's input; None for a bug."""
    from pydantic import ValidationError

    if isinstance(exc, click_exceptions.UsageError):
        ctx = exc.ctx
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        return _one_line(exc.format_message()) + hint, exc.exit_code
    if isinstance(exc, click_exceptions.ClickException):
        return _one_line(exc.format_message()), exc.exit_code
    if isinstance(exc, typer.Abort):
        return "aborted", 1
    if isinstance(exc, FedPAError):
        return _one_line(str(exc)), 1
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or exc.title}: {e['msg']}" for e in exc.errors()]
        return _one_line(f"{exc.title}: " + "; ".join(parts)), 1
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (quote keys and strings)", 1
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return _one_line(f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc)), 1
    if isinstance(exc, MemoryError):
        return "out of memory (try fewer users, devices or workers)", 1
    return None


def _wants_verbose(args: Sequence[str]) -> bool:
    return any(a in VERBOSE_FLAGS for a in args)


class _FilteredText(io.TextIOBase):
    """``sys.stderr`` minus native log lines: ExecuTorch's bindings print them through Python's
    ``sys.stderr`` one token per ``write`` call, so lines are reassembled before they are judged."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if not NATIVE_NOISE.match(line.encode("utf-8", "replace")):
                self._stream.write(line + "\n")
        if self._pending and not self._pending.startswith(("[", "I", "W", "E", "D", "F")):
            self._stream.write(self._pending)  # a partial line that cannot be noise (prompts, live bars)
            self._pending = ""
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # typeshed: writable; at run time a read-only descriptor
        return self._stream.encoding

    def close_filter(self) -> None:
        if self._pending and not NATIVE_NOISE.match(self._pending.encode("utf-8", "replace")):
            self._stream.write(self._pending)
        self._pending = ""
        self._stream.flush()


class _NativeStderrFilter:
    """Drop native libraries' log lines written to file descriptor 2; pass every other byte through.

    Python's own ``sys.stderr`` is moved to a duplicate of the real descriptor (so it stays a
    terminal and rich's live displays keep working); only writes that go to fd 2 directly — C++
    code, child processes — cross a pipe whose reader thread filters them line by line.
    """

    def __init__(self) -> None:
        self._saved = os.dup(2)
        self._read, write = os.pipe()
        self._old_stderr = sys.stderr
        sys.stderr.flush()
        os.dup2(write, 2)
        os.close(write)
        sys.stderr = _FilteredText(io.TextIOWrapper(
            os.fdopen(os.dup(self._saved), "wb", buffering=0), write_through=True,
            encoding=getattr(self._old_stderr, "encoding", None) or "utf-8", errors="backslashreplace"))
        self._thread = threading.Thread(target=self._pump, name="fedpa-native-stderr", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        with os.fdopen(self._read, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                self._emit(lines)
            if pending:
                self._emit([pending])

    def _emit(self, lines: list[bytes]) -> None:
        keep = b"".join(line + b"\n" for line in lines if line.strip() and not NATIVE_NOISE.match(line))
        if keep:
            os.write(self._saved, keep)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if isinstance(sys.stderr, _FilteredText):
                sys.stderr.close_filter()
        sys.stderr = self._old_stderr
        os.dup2(self._saved, 2)  # closes the pipe's last write end we hold: the reader sees EOF
        self._thread.join(timeout=2.0)  # a child process may still hold the pipe; it is a daemon thread
        if not self._thread.is_alive():
            os.close(self._saved)


def _looks_native(line: str) -> bool:
    return bool(NATIVE_NOISE.match(line.encode("utf-8", "replace")))


@contextlib.contextmanager
def _quiet_rich_proxies() -> Iterator[None]:
    """While a rich live display (progress bar, spinner) runs on a terminal, rich replaces
    ``sys.stderr`` with a proxy that prints through the console, bypassing our filter; ExecuTorch's
    token-by-token writes then showed one token per line. Filter lines there as well."""
    try:
        from rich.file_proxy import FileProxy
    except ImportError:  # pragma: no cover - rich is a dependency
        yield
        return
    write, flush = FileProxy.write, FileProxy.flush

    def quiet_write(self: Any, text: str) -> int:
        pending = getattr(self, "_fedpa_pending", "") + text
        *lines, pending = pending.split("\n")
        kept = [line for line in lines if not _looks_native(line)]
        if kept:
            write(self, "\n".join(kept) + "\n")
        if pending and not pending.startswith(("[", "I", "W", "E", "D", "F")):
            write(self, pending)
            pending = ""
        self._fedpa_pending = pending
        return len(text)

    def quiet_flush(self: Any) -> None:
        if not getattr(self, "_fedpa_pending", ""):  # a partial line waits for its end, then is judged
            flush(self)

    FileProxy.write, FileProxy.flush = quiet_write, quiet_flush  # type: ignore[method-assign]
    try:
        yield
    finally:
        FileProxy.write, FileProxy.flush = write, flush  # type: ignore[method-assign]


def _stderr_is_fd2() -> bool:
    try:
        return sys.stderr.fileno() == 2
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False  # captured (CliRunner, pytest's capsys): native output is not ours to filter


@contextlib.contextmanager
def quiet_dependencies(verbose: bool) -> Iterator[None]:
    """Hide dependencies' warnings and log lines for the duration of a command, unless ``verbose``."""
    if verbose:
        yield
        return
    os.environ.setdefault("TORCH_LOGS", "-torch")  # read once, when torch is first imported
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    native = _NativeStderrFilter() if _stderr_is_fd2() else None
    try:
        with warnings.catch_warnings(), _quiet_rich_proxies():
            warnings.simplefilter("ignore")
            for package in PROJECT_PACKAGES:  # our own warnings still show
                warnings.filterwarnings("default", module=rf"{package}(\.|$)")
            yield
    finally:
        if native is not None:
            native.close()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _guarded_main(main: Callable[..., Any], args: Sequence[str] | None, prog_name: str | None,
                  complete_var: str | None, standalone_mode: bool, windows_expand_args: bool,
                  extra: dict[str, Any]) -> Any:
    """click's ``main`` (passed in) with dependencies quiet and one ``error:`` line per failure."""
    if not standalone_mode:  # a caller that handles errors itself
        return main(args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
    argv = list(sys.argv[1:] if args is None else args)
    verbose = _wants_verbose(argv)
    try:
        with quiet_dependencies(verbose):
            rv = main(argv, prog_name, complete_var, False, windows_expand_args, **extra)
    except click_exceptions.NoArgsIsHelpError as exc:
        if exc.format_message().strip():  # typer's rich help is printed while the error is built
            typer.echo(exc.format_message())
        sys.exit(exc.exit_code)
    except Exception as exc:
        known = error_message(exc)
        if known is None and verbose:
            raise
        message, code = known or (
            f"unexpected {type(exc).__name__}: {_one_line(str(exc))} — a FedPA bug; rerun with --verbose "
            "for the traceback and report it", 1)
        sys.stdout.flush()
        typer.echo(f"error: {message}", err=True, color=False)
        sys.exit(code)
    sys.exit(rv if isinstance(rv, int) else 0)


class FedPAGroup(TyperGroup):
    """A typer group whose ``main`` handles errors and dependency noise for every sub-command."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        return _guarded_main(super().main, args, prog_name, complete_var, standalone_mode, windows_expand_args, extra)


class FedPACommand(TyperCommand):
    """The same for a one-command typer app (typer builds a plain command, not a group, for those)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        return _guarded_main(super().main, args, prog_name, complete_var, standalone_mode, windows_expand_args, extra)


def make_app(**kwargs: Any) -> typer.Typer:
    """A ``typer.Typer`` whose commands all print bad input as one ``error:`` line and keep libraries quiet."""
    kwargs.setdefault("pretty_exceptions_enable", False)
    return typer.Typer(cls=FedPAGroup, **kwargs)
