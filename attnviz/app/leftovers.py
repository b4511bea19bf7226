"""Temporary folders the server makes (export zips, training staging) carry the id of the process
that made them, so that a later start can remove what a crashed or killed server left behind
without touching the folders of a server still running beside it; and SIGTERM runs the same
clean-up as a normal exit.

    d = tempfile.mkdtemp(prefix=owned_prefix("attnviz_export_"), dir=...)
    remove_orphans(folder, "attnviz_export_")     # at start: folders of processes that are gone
    on_exit(fn)                                   # at exit and on SIGTERM
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

_EXIT: list = []
_LOCK = threading.Lock()
LEGACY_AGE_SECONDS = 3600  # a folder without a process id is removed once this old


def owned_prefix(prefix: str) -> str:
    """``prefix`` followed by this process's id (``attnviz_export_1234_``)."""
    return f"{prefix}{os.getpid()}_"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_orphans(folder, prefix: str) -> int:
    """Remove the folders ``folder/prefix*`` whose process is gone (or, named without one, older
    than an hour); how many went."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    gone = 0
    pattern = re.compile(re.escape(prefix) + r"(\d+)_")
    for d in folder.glob(prefix + "*"):
        if not d.is_dir() or d.is_symlink():
            continue
        m = pattern.match(d.name)
        try:
            stale = (not _alive(int(m.group(1)))) if m else \
                time.time() - d.stat().st_mtime > LEGACY_AGE_SECONDS
        except OSError:
            continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            gone += 1
    return gone


def on_exit(fn) -> None:
    """Run ``fn()`` when the process exits normally and when it receives SIGTERM."""
    with _LOCK:
        _EXIT.append(fn)
    atexit.register(fn)


def run_exit_handlers() -> None:
    with _LOCK:
        handlers = list(_EXIT)
    for fn in handlers:
        try:
            fn()
        except Exception:  # noqa: BLE001, S110 - every handler runs
            pass


def stop_on_sigterm() -> None:
    """SIGTERM (docker stop, systemd, a supervisor) runs the exit handlers, then ends the process
    as SIGTERM does (Python's default would skip them). Call from the main thread."""
    def handler(signum, frame):
        run_exit_handlers()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    signal.signal(signal.SIGTERM, handler)
