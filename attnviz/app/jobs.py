"""Heavy jobs (training, evaluation, the sanity check): one at a time, bounded in time, and
stopped at their next step when the request that started them is cancelled or its client leaves.

    with jobs.heavy_job("training my_cbam") as job:   # busy: a clear "busy until ..." message
        train(..., progress=lambda d: (job.check(), report(d)))   # check() raises JobStopped

Gradio cancels a request by cancelling its asyncio task: the worker thread running the handler
goes on, and Gradio frees the request's concurrency slot at once. So the slot that keeps heavy
jobs one at a time is held here, by the thread itself, until the work has really stopped; and
the work asks :meth:`Job.check` at every step whether its request is still alive (still among
the queue's active jobs, its client still connected) and within its wall-time limit. A stopped
job raises :class:`JobStopped` out of the library call, so nothing after it runs (a training
writes no checkpoint).
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

from ..errors import AttnvizError
from . import limits


class JobStopped(AttnvizError):
    """A heavy job stopped before the end (cancelled, its client left, or over its time limit);
    nothing was written."""


class Busy(AttnvizError):
    """Another heavy job holds the slot."""


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(t))


@dataclass
class Job:
    """A running heavy job: what it is, when it started and must end, the request behind it."""

    what: str  # shown to the session that started it (it may name a model)
    max_seconds: float = limits.JOB_MAX_SECONDS
    kind: str = "a job"  # what every other session is told is running
    session: str | None = None  # the session that started it
    started: float = field(default_factory=time.time)
    blocks: object = None  # the Gradio app and event id of the request that started it
    event_id: str | None = None
    stopped: str | None = None  # why it stopped, once it has

    @property
    def deadline(self) -> float:
        return self.started + self.max_seconds

    def alive(self) -> bool:
        """Whether the request is still running: Gradio drops a cancelled or failed request from
        its active jobs and marks one whose browser left as closed."""
        if self.blocks is None or self.event_id is None:
            return True  # not started by a Gradio request (a library call, a test)
        queue = getattr(self.blocks, "_queue", None)
        for group in list(getattr(queue, "active_jobs", None) or []):
            for evt in group or ():
                if getattr(evt, "_id", None) == self.event_id:
                    return not getattr(evt, "closed", False)
        return False

    def check(self, *_args) -> None:
        """Raise :class:`JobStopped` if the job must stop now (call it at every step)."""
        if self.stopped is None:
            if time.time() > self.deadline:
                self.stopped = (f"{self.what} stopped after {self.max_seconds / 60:.0f} min, the "
                                "time limit of a job; nothing was saved. Ask for less (fewer "
                                "epochs or images) and try again")
            elif not self.alive():
                self.stopped = f"{self.what} was cancelled; nothing was saved"
        if self.stopped is not None:
            raise JobStopped(self.stopped)

    def mine(self, session: str | None) -> bool:
        """Whether ``session`` started this job."""
        return self.session is None or session == self.session

    def info(self, session: str | None = None) -> dict:
        """For /health: its name, state and times for the session that started it; what kind
        of job and until when for any other."""
        out = {"what": self.what if self.mine(session) else f"{self.kind} (another session's)",
               "started": _clock(self.started), "running_s": round(time.time() - self.started, 1),
               "ends_by": _clock(self.deadline)}
        if self.mine(session):
            out.update(request_alive=self.alive(), stopping=self.stopped)
        return out


_SLOT = threading.Lock()
_CURRENT: list[Job] = []  # the job holding the slot (0 or 1)
_STATS = {"finished": 0, "stopped": 0, "failed": 0}


def _request_context() -> tuple[object, str | None, str | None]:
    """(app, event id, session) of the Gradio request running in this thread."""
    try:
        from gradio.context import LocalContext

        from .sessions import request_session
        return LocalContext.blocks.get(None), LocalContext.event_id.get(None), request_session()
    except Exception:  # noqa: BLE001 - outside Gradio
        return None, None, None


@contextlib.contextmanager
def heavy_job(what: str, max_seconds: float | None = None, wait: float | None = None,
              kind: str = "a job"):
    """Hold the heavy-job slot while the block runs; yields the :class:`Job`. Waits up to
    ``wait`` seconds (SLOT_WAIT_SECONDS: time for a stopping job to reach its next step), then
    raises :class:`Busy` saying what runs and until when at the latest (``what`` to the session
    that started it, ``kind``, e.g. "a training", to any other)."""
    blocks, event_id, session = _request_context()
    job = Job(what, limits.JOB_MAX_SECONDS if max_seconds is None else max_seconds, kind=kind,
              session=session, blocks=blocks, event_id=event_id)
    if not _SLOT.acquire(timeout=limits.SLOT_WAIT_SECONDS if wait is None else wait):
        cur = _CURRENT[0] if _CURRENT else None
        if cur is None:
            raise Busy("The server is busy with another job; try again in a minute.")
        shown = cur.what if cur.mine(session) else f"{cur.kind} for another session"
        raise Busy(f"The server is busy with one job at a time: {shown} started at "
                   f"{_clock(cur.started)} and ends by {_clock(cur.deadline)} at the latest. "
                   "Try again then.")
    job.started = time.time()
    _CURRENT.append(job)
    outcome = "failed"
    try:
        yield job
        job.check()  # cancelled during the last step: the caller must not keep its result
        outcome = "finished"
    except JobStopped:
        outcome = "stopped"
        raise
    finally:
        _CURRENT.clear()
        _STATS[outcome] += 1
        _SLOT.release()


def current(session: str | None = None) -> dict | None:
    """The running heavy job as ``session`` may see it (for /health), or None."""
    cur = _CURRENT[0] if _CURRENT else None
    return None if cur is None else cur.info(session)


def stats() -> dict:
    return dict(_STATS)
