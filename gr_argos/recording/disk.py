# SPDX-License-Identifier: GPL-3.0-or-later
"""What both recorders (spectra and IQ samples) do the same way: say what a write error
means and what to do, delete the oldest files past a total size, and run a writer thread
between start and stop.

Plain code: no GNU Radio, no sockets.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import IO, Any, Sequence

__all__ = ["RETRY_S", "WriterThread", "close_quietly", "delete_oldest", "replace_json",
           "report_write_error", "write_error_message"]

log = logging.getLogger(__name__)

#: Seconds between attempts to write again after a write error.
RETRY_S = 5.0


def write_error_message(exc: OSError, what: str, dir_setting: str, total_setting: str) -> str:
    """The error a recorder reports when writing failed: what, why, what to do.

    Args:
        exc: the error.
        what: what it was doing ("cannot write /rec/x.args").
        dir_setting: the setting naming its directory (``record_dir``).
        total_setting: the setting bounding its files in all (``record_max_total_bytes``).
    """
    name = errno.errorcode.get(exc.errno or 0, "error")
    problem = f"{what}: {exc.strerror or exc} ({name})"
    hint = {errno.ENOSPC: f"free space or set {total_setting}",
            errno.EACCES: f"make it writable for this user or choose another {dir_setting}",
            errno.EROFS: f"the file system is read-only: choose another {dir_setting}",
            errno.ENOTDIR: f"part of the path is a file: choose another {dir_setting}"}.get(
                exc.errno or 0, f"check the disk and {dir_setting}")
    return (f"recording stopped: {problem}; {hint}. Data is dropped and counted until it "
            f"works again (tried every {RETRY_S:g} s)")


def report_write_error(logger: logging.Logger, event: str, exc: OSError, what: str,
                       dir_setting: str, total_setting: str, previous: str | None) -> str:
    """:func:`write_error_message`, logged as ``event=EVENT ...`` unless it is the same as
    ``previous`` (a recorder retrying logs each distinct error once)."""
    message = write_error_message(exc, what, dir_setting, total_setting)
    if message != previous:
        logger.error("event=%s %s", event, message)
    return message


def replace_json(target: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``target`` whole: to a file beside it, synced, then renamed
    into place (a power cut leaves the old file or the new one, never half of one).

    Raises:
        OSError: it could not be written.
    """
    temporary = target.with_name(target.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def _size(files: Sequence[Path]) -> int:
    total = 0
    for part in files:
        try:
            total += part.stat().st_size
        except OSError:
            pass
    return total


def delete_oldest(recordings: Sequence[Sequence[Path]], current: Sequence[Path], limit: int,
                  setting: str) -> int:
    """Delete the oldest recordings past ``limit`` bytes in all, never ``current``.

    Args:
        recordings: the others, oldest first; each the files that make one (a segment with
            its index and sidecar, a SigMF data file with its meta file).
        current: the files being written (counted, never deleted).
        limit: bytes in all (0: keep everything).
        setting: the setting's name, for the log.

    Returns:
        How many recordings were deleted.
    """
    if not limit:
        return 0
    sizes = [_size(files) for files in recordings]
    total = sum(sizes) + _size(current)
    deleted = 0
    for files, size in zip(recordings, sizes):
        if total <= limit:
            break
        for part in files:
            try:
                part.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("event=retention_failed file=%s: %s", part, exc)
        total -= size
        deleted += 1
        log.info("event=recording_deleted file=%s reason=%s", files[0].name, setting)
    return deleted


def close_quietly(*handles: IO[bytes]) -> None:
    """Close each file; an error now was reported when writing failed (the file ends at its
    last whole record)."""
    for handle in handles:
        try:
            handle.close()
        except OSError:
            pass


class WriterThread:
    """What both recorders share about their writer thread: whether it runs, stopping it,
    and what a write error does to it (said once per distinct error, counted, tried again
    in :data:`RETRY_S` s). A recorder sets these attributes in its ``__init__``."""

    _thread: threading.Thread | None
    _stopping: threading.Event
    _lock: threading.Lock
    _retry_at: float
    error: str | None
    write_errors: int

    @property
    def started(self) -> bool:
        """Whether it records (between ``start()`` and :meth:`stop`)."""
        return self._thread is not None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, finish the file being written and stop; what comes from
        then on is not recorded (nor counted as dropped)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout_s)

    def _write_failed(self, logger: logging.Logger, event: str, exc: OSError, what: str,
                      dir_setting: str, total_setting: str) -> None:
        self.error = report_write_error(logger, event, exc, what, dir_setting, total_setting,
                                        self.error)
        self.write_errors += 1
        self._retry_at = time.monotonic() + RETRY_S
