# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio source of wideband spectra from ``hackrf_sweep`` (HackRF tools).

The block runs ``hackrf_sweep`` as a child process, reassembles its segments into one vector
per sweep (:mod:`gr_argos.sweep`) and outputs the vectors, tagged so that the WebSocket sink
describes the whole swept range. A watchdog restarts a child that falls silent.
"""

from __future__ import annotations

import dataclasses
import math
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np
import numpy.typing as npt
import pmt
from gnuradio import gr

from gr_argos import tags
from gr_argos.settings import from_arguments, init_signature, rename_arguments
from gr_argos.sweep import (
    BinaryRecordParser,
    Sweep,
    SweepAssembler,
    SweepSettings,
    TextLineParser,
)

__all__ = ["hackrf_sweep_source"]

# The block's arguments before its settings had one name everywhere.
_RENAMED = {"executable": "sweep_executable", "watchdog_timeout": "watchdog_timeout_s",
            "restart_backoff_max": "restart_backoff_max_s"}


#: Sweeps waiting for work(); when full the oldest is dropped (and counted).
QUEUE_DEPTH = 16
#: First pause before restarting a child; doubles up to restart_backoff_max.
RESTART_BACKOFF_MIN_S = 0.5
#: Time a child gets to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE_S = 2.0
#: Longest time work() waits for a sweep before returning 0 items.
WORK_WAIT_S = 0.1
#: Status messages carry sweep counts at most this often (events are sent at once).
STATUS_INTERVAL_S = 1.0
#: Sweeps per second are measured over this many of the latest sweeps.
RATE_WINDOW = 20
#: Distinct messages about the child remembered so as to log each once; beyond this many
#: the oldest is forgotten (and would be logged again).
MESSAGE_MEMORY = 256

_CHILD_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE)
_NO_DEVICE_MARKERS = ("no hackrf boards found", "hackrf not found", "hackrf_error_not_found")
_PROGRESS_MARKERS = ("total sweeps completed", "sweeps/second")


class _Repeats:
    """Which messages to log: each distinct one once until :meth:`forget`; repeats counted.

    A child that keeps failing writes the same usage text and errors on every restart;
    logged once, they stay readable. Thread-safe (the stderr reader and the supervisor
    both log).

    Args:
        memory: distinct messages remembered; beyond that the oldest is forgotten.
    """

    def __init__(self, memory: int = MESSAGE_MEMORY) -> None:
        self._seen: dict[str, None] = {}  # insertion-ordered: the oldest comes first
        self._memory = memory
        self._lock = threading.Lock()
        self.total = 0  # repeats not logged since this was made
        self._recent = 0  # repeats not logged since the last take_recent()

    def first(self, key: str) -> bool:
        """True the first time ``key`` comes (log it); False for a repeat (counted)."""
        with self._lock:
            if key in self._seen:
                self.total += 1
                self._recent += 1
                return False
            if len(self._seen) >= self._memory:
                del self._seen[next(iter(self._seen))]
            self._seen[key] = None
            return True

    def forget(self) -> None:
        """Log every message once more from now on (a child delivered sweeps: a new
        failure is news)."""
        with self._lock:
            self._seen.clear()

    def take_recent(self) -> int:
        """Repeats not logged since the previous call."""
        with self._lock:
            recent, self._recent = self._recent, 0
        return recent


class hackrf_sweep_source(gr.sync_block):
    """Wideband spectrum from ``hackrf_sweep``: one float32 dB vector per sweep.

    Output: vectors of ``bins`` dB values over ``[freq_min, freq_max)``, lowest frequency
    first, one per pass of the HackRF over the range. Uncovered bins hold the sweep's lowest
    value (see :class:`gr_argos.sweep.Sweep`). Each vector is tagged ``rx_freq`` (centre of
    the range, Hz), ``rx_rate`` (the span, Hz), ``rx_time`` (when the sweep began, host
    clock), ``sweep_number`` and ``sweep_complete`` (bool: every bin covered).

    The message port ``status`` sends a PMT dict on every event (child started, exited,
    restarted, failed) and at most once a second while sweeps flow: ``source``, ``args``,
    ``freq_min_hz``, ``freq_max_hz``, ``bin_width_hz``, ``sweeps``, ``sweeps_incomplete``,
    ``sweeps_dropped``, ``sweep_rate_hz``, ``restarts``, ``state``, ``last_error`` and
    ``messages_repeated``.

    The child starts in ``start()`` and ends in ``stop()`` (SIGTERM, SIGKILL after 2 s).
    If it writes nothing for ``watchdog_timeout_s`` seconds, or exits, it is restarted after a
    pause that doubles from 0.5 s up to ``restart_backoff_max_s`` (reset by the next sweep).
    What the child writes on stderr, and what the block says about it, is logged once per
    streak of failed restarts: repeats are counted in ``messages_repeated`` and in the
    restart line, and logged again only after a child has delivered sweeps.

    Keyword arguments: its settings (:class:`~gr_argos.sweep.SweepSettings`: ``freq_min``,
    ``freq_max`` and ``bin_width`` in Hz, ``bins``, ``lna_gain``, ``vga_gain``, ``amp``,
    ``reduce``, ``sweep_executable``, ``output_format``, ``watchdog_timeout_s``,
    ``restart_backoff_max_s``, ``device_args``); ``help(hackrf_sweep_source)`` lists them with
    their defaults. ``freq_min`` is rounded down and ``freq_max`` up to whole MHz for
    hackrf_sweep ``-f``, which also extends its sweep to whole 20 MHz steps: the extra is
    dropped.

    Raises:
        FileNotFoundError: ``sweep_executable`` is not found (``apt-get install hackrf``).
        ConfigError: a setting is out of range (naming it).
        TypeError: an argument that is not a setting of this block.
    """

    STATUS_PORT = pmt.intern("status")

    def __init__(self, **settings: Any) -> None:
        settings = rename_arguments("hackrf_sweep_source", settings, _RENAMED)
        (sweep,) = from_arguments("hackrf_sweep_source", settings, SweepSettings)
        gr.sync_block.__init__(
            self, name="hackrf_sweep_source", in_sig=None, out_sig=[(np.float32, sweep.bins)]
        )
        program = shutil.which(sweep.sweep_executable)
        if program is None:
            raise FileNotFoundError(
                f"{sweep.sweep_executable} not found: apt-get install hackrf (or set "
                f"sweep_executable to the path of hackrf_sweep)")
        self.bin_width_hz = sweep.bin_width
        self.output_format = sweep.output_format
        self.watchdog_timeout_s = sweep.watchdog_timeout_s
        self.restart_backoff_max_s = sweep.restart_backoff_max_s
        self.device_args = sweep.device_args
        self._program = program
        self._use(sweep)
        self.retunes = 0  # restarts asked for by retune(), not counted as restarts
        self._retuning = False

        self.sweeps = 0
        self.sweeps_incomplete = 0
        self.sweeps_dropped = 0
        self.restarts = 0
        self.last_error = ""
        self._repeats = _Repeats()
        self.state = "stopped"
        self.child_pid: int | None = None
        self._sweep_times: deque[float] = deque(maxlen=RATE_WINDOW)
        self._queue: deque[Sweep] = deque()
        self._ready = threading.Condition()
        self._stopping = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._child_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._last_status_s = 0.0
        self.message_port_register_out(self.STATUS_PORT)

    def _use(self, sweep: SweepSettings) -> None:
        """The settings, arguments and assembler of the next hackrf_sweep started."""
        self.settings = sweep
        self.freq_min_hz = sweep.freq_min
        self.freq_max_hz = sweep.freq_max
        self.args = [
            "-f", f"{math.floor(sweep.freq_min / 1e6)}:{math.ceil(sweep.freq_max / 1e6)}",
            "-w", str(round(sweep.bin_width)),
            "-l", str(round(sweep.lna_gain)),
            "-g", str(round(sweep.vga_gain)),
            "-a", "1" if sweep.amp else "0",
            *(["-d", self.device_args] if self.device_args else []),
            *(["-B"] if sweep.output_format == "binary" else []),
        ]
        self.command = [self._program, *self.args]
        self.assembler = SweepAssembler(sweep.freq_min, sweep.freq_max, sweep.bins,
                                        "mean" if sweep.reduce == "mean" else "max")

    def retune(self, **changes: Any) -> SweepSettings:
        """Sweep another range or with other gains (``freq_min``, ``freq_max``,
        ``lna_gain``, ``vga_gain``, ``amp``): hackrf_sweep is restarted with them at once,
        without the backoff of a failure. Each frame says its own sweep's range (its
        ``rx_freq`` and ``rx_rate`` tags), so none is labelled with the other range; the
        sweep in progress ends as an incomplete one of the old range. Any thread.

        Raises:
            ConfigError: a value out of range, or freq_min not below freq_max.
        """
        sweep = dataclasses.replace(self.settings, **changes)
        with self._child_lock:
            self._use(sweep)
            self._retuning = True
            child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
        return sweep

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> bool:
        """Start the child and its supervisor; errors are logged, never raised (an exception
        from a Python block's start() hangs or crashes the scheduler)."""
        try:
            self._stopping.clear()
            supervisor = threading.Thread(target=self._supervise, name="hackrf_sweep",
                                          daemon=True)
            supervisor.start()
            self._threads = [supervisor]
        except Exception as exc:  # noqa: BLE001 - see the docstring
            self.logger.error(f"cannot start hackrf_sweep: {exc}")
        return True

    def stop(self) -> bool:
        """End the child (SIGTERM, then SIGKILL) and join the threads."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=TERMINATE_GRACE_S + 5)
        self._threads = []
        self._kill_child()  # only if the supervisor did not end it in time
        self.state = "stopped"
        with self._ready:
            self._ready.notify_all()
        return True

    # -- the child process -----------------------------------------------------------------

    def _supervise(self) -> None:
        # GNU Radio's scheduler threads block signals, this thread inherits that mask and a
        # child inherits it through fork and exec: a child with SIGTERM blocked cannot be
        # stopped gently. Unblock them here, for this thread and so for the children.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _CHILD_SIGNALS)
        try:
            self._restart_until_stopped()
        except Exception as exc:  # noqa: BLE001 - a thread's exception would only be printed
            self._error(f"hackrf_sweep supervisor failed: {exc!r}")
            self._kill_child()

    def _restart_until_stopped(self) -> None:
        backoff_s = RESTART_BACKOFF_MIN_S
        while not self._stopping.is_set():
            sweeps_before = self.sweeps
            self._run_child()
            if self._stopping.is_set():
                break
            with self._child_lock:
                retuned, self._retuning = self._retuning, False
            if retuned:
                self.retunes += 1
                backoff_s = RESTART_BACKOFF_MIN_S
                continue
            if self.sweeps > sweeps_before:
                backoff_s = RESTART_BACKOFF_MIN_S
                self._repeats.forget()
            self.restarts += 1
            self.state = "restarting"
            repeated = self._repeats.take_recent()
            self.logger.warn(f"restarting hackrf_sweep in {backoff_s:g} s "
                             f"(restart {self.restarts}"
                             + (f"; {repeated} repeated message(s) not logged again)"
                                if repeated else ")"))
            self._publish_status()
            if self._stopping.wait(backoff_s):
                break
            backoff_s = min(backoff_s * 2, self.restart_backoff_max_s)

    def _run_child(self) -> None:
        with self._child_lock:  # a retune() may change them for the next child
            command, assembler = self.command, self.assembler
        try:
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True,  # our SIGINT is not its
            )
        except OSError as exc:
            self._error(f"cannot run {self.command[0]}: {exc}")
            return
        with self._child_lock:
            self._child = child
            self.child_pid = child.pid
        self.state = "running"
        shown = " ".join(command)
        self._log_once(self.logger.info, f"started {shown} (pid {child.pid})",
                       key=f"started {shown}")
        self._publish_status()
        stderr_reader = threading.Thread(target=self._log_stderr, args=(child,),
                                         name="hackrf_sweep stderr", daemon=True)
        stderr_reader.start()
        try:
            self._read_stdout(child, assembler)
        finally:
            if child.poll() is None:  # only after an unexpected exception
                child.kill()
                child.wait()
            stderr_reader.join(timeout=5)
            self._queue_sweep(assembler.flush())
            with self._child_lock:
                self._child = None
        if not self._stopping.is_set() and child.returncode not in (None, 0, -signal.SIGTERM,
                                                                    -signal.SIGKILL):
            if not self.last_error:
                self._error(f"hackrf_sweep exited with status {child.returncode}")
            else:
                self._log_once(self.logger.warn,
                               f"hackrf_sweep exited with status {child.returncode}")
        self._publish_status()

    def _read_stdout(self, child: subprocess.Popen[bytes], assembler: SweepAssembler) -> None:
        """Read until the child's output ends; end the child on stop() or when it is silent.

        The output is drained while the child terminates: a child blocked writing to a full
        pipe could not act on SIGTERM.
        """
        assert child.stdout is not None
        parser = BinaryRecordParser() if self.output_format == "binary" else TextLineParser()
        descriptor = child.stdout.fileno()
        last_output_s = time.monotonic()
        terminated_s: float | None = None
        while True:
            readable, _, _ = select.select([descriptor], [], [], 0.2)
            now = time.monotonic()
            if terminated_s is None and (self._stopping.is_set()
                                         or now - last_output_s > self.watchdog_timeout_s):
                if not self._stopping.is_set():
                    self._error(f"hackrf_sweep wrote nothing for {self.watchdog_timeout_s:g} s;"
                                f" restarting it")
                child.terminate()
                terminated_s = now
            elif terminated_s is not None and now - terminated_s > TERMINATE_GRACE_S:
                if child.poll() is None:
                    self.logger.warn(f"hackrf_sweep (pid {child.pid}) ignored SIGTERM; "
                                     f"killing it")
                    child.kill()
                terminated_s = math.inf  # killed: only wait for the end of the output
            if not readable:
                continue
            data = os.read(descriptor, 65536)
            if not data:
                child.wait()
                return
            if terminated_s is not None:
                continue  # the rest of a child being stopped is discarded
            last_output_s = now
            received_s = time.time()
            for segment in parser.feed(data):
                self._queue_sweep(assembler.add(segment, received_s))
            self._report_skipped(parser)

    def _report_skipped(self, parser: BinaryRecordParser | TextLineParser) -> None:
        if isinstance(parser, TextLineParser) and parser.lines_skipped:
            self.logger.warn(f"skipped {parser.lines_skipped} unreadable line(s) of "
                             f"hackrf_sweep, last: {parser.last_bad_line!r}")
            parser.lines_skipped = 0
        elif isinstance(parser, BinaryRecordParser) and parser.bytes_skipped:
            self.logger.warn(f"skipped {parser.bytes_skipped} bytes of hackrf_sweep output "
                             f"that are no record")
            parser.bytes_skipped = 0

    def _log_stderr(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stderr is not None
        for raw in child.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            lower = line.lower()
            if any(marker in lower for marker in _NO_DEVICE_MARKERS):
                self._error(f"no HackRF found ({line}): attach one, check `hackrf_info`"
                            + (f", or check the serial number {self.device_args!r}"
                               if self.device_args else ""))
            elif any(marker in lower for marker in _PROGRESS_MARKERS):
                self.logger.debug(f"hackrf_sweep: {line}")
            elif "failed" in lower or "error" in lower:
                self._error(f"hackrf_sweep: {line}")
            elif not line.startswith("[-") and not line.startswith("-r "):  # usage text
                self._log_once(self.logger.info, f"hackrf_sweep: {line}")

    def _kill_child(self) -> None:
        with self._child_lock:
            child = self._child
        if child is not None and child.poll() is None:
            self.logger.warn(f"killing hackrf_sweep (pid {child.pid})")
            child.kill()
            child.wait()

    def _error(self, message: str) -> None:
        """Report an error in the status (every time) and the log (once, see _Repeats)."""
        self.last_error = message
        self.state = "error"
        self._log_once(self.logger.error, message)
        self._publish_status()

    def _log_once(self, log: Callable[[str], None], message: str, key: str = "") -> None:
        """``log(message)`` unless ``key`` (default: the message) was logged already since
        a child last delivered sweeps; a repeat is only counted (not even at debug level,
        which Debian's GNU Radio shows by default)."""
        if self._repeats.first(key or message):
            log(message)

    # -- sweeps ----------------------------------------------------------------------------

    def _queue_sweep(self, sweep: Sweep | None) -> None:
        if sweep is None:
            return
        self.sweeps += 1
        if not sweep.complete:
            self.sweeps_incomplete += 1
        self._sweep_times.append(time.monotonic())
        if self.state != "running":
            self.state = "running"
        with self._ready:
            if len(self._queue) >= QUEUE_DEPTH:
                self._queue.popleft()
                self.sweeps_dropped += 1
            self._queue.append(sweep)
            self._ready.notify()
        if time.monotonic() - self._last_status_s >= STATUS_INTERVAL_S:
            self._publish_status()

    def work(self, input_items: list[npt.NDArray[Any]], output_items: list[npt.NDArray[Any]]) -> int:
        out = output_items[0]
        with self._ready:
            if not self._queue:
                self._ready.wait(WORK_WAIT_S)  # wake for a sweep or at least ten times a second
            sweeps = [self._queue.popleft() for _ in range(min(len(out), len(self._queue)))]
        first = self.nitems_written(0)
        for index, sweep in enumerate(sweeps):
            out[index] = sweep.power_db
            self._tag(first + index, sweep)
        return len(sweeps)

    def _tag(self, offset: int, sweep: Sweep) -> None:
        seconds = math.floor(sweep.start_time_s)
        for key, value in (
            (tags.RX_FREQ, pmt.from_double(sweep.center_freq_hz)),
            (tags.RX_RATE, pmt.from_double(sweep.span_hz)),
            (tags.RX_TIME, pmt.make_tuple(pmt.from_uint64(seconds),
                                         pmt.from_double(sweep.start_time_s - seconds))),
            (tags.SWEEP_NUMBER, pmt.from_uint64(sweep.number)),
            (tags.SWEEP_COMPLETE, pmt.from_bool(sweep.complete)),
        ):
            self.add_item_tag(0, offset, key, value)

    # -- status ----------------------------------------------------------------------------

    @property
    def sweep_rate_hz(self) -> float:
        """Sweeps per second over the latest sweeps (0 until two have arrived)."""
        times = self._sweep_times
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def status(self) -> dict[str, Any]:
        """What the ``status`` port sends, as a Python dict."""
        return {
            "source": "hackrf_sweep",
            "args": " ".join(self.args),  # flags only: no secrets, a serial number at most
            "freq_min_hz": self.freq_min_hz,
            "freq_max_hz": self.freq_max_hz,
            "bin_width_hz": self.bin_width_hz,
            "sweeps": self.sweeps,
            "sweeps_incomplete": self.sweeps_incomplete,
            "sweeps_dropped": self.sweeps_dropped,
            "sweep_rate_hz": round(self.sweep_rate_hz, 3),
            "restarts": self.restarts,
            "retunes": self.retunes,
            "state": self.state,
            "last_error": self.last_error,
            "messages_repeated": self._repeats.total,
        }

    def _publish_status(self) -> None:
        self._last_status_s = time.monotonic()
        try:
            self.message_port_pub(self.STATUS_PORT, pmt.to_pmt(self.status()))
        except Exception as exc:  # noqa: BLE001 - status must never end the reader
            self.logger.warn(f"could not send a status message: {exc}")


hackrf_sweep_source.__init__.__signature__ = init_signature(SweepSettings)  # type: ignore[attr-defined]
