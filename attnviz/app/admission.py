"""Who may join the queue: heavy jobs never fill it for the analyses.

Gradio 6 has one size limit for the whole queue (``queue(max_size=...)``), shared by every event:
65 queued evaluations made every other user's analysis fail with "Queue is full". Here each
request is admitted before Gradio queues it (:func:`install` wraps the app's ``Queue.push``):

- a **heavy** event (:data:`HEAVY`: training, evaluation, the sanity check, deletion/insertion
  scores, export) is refused when its session already has HEAVY_PER_SESSION (one) waiting, or
  when HEAVY_QUEUE_MAX heavy events from all sessions already wait;
- any other event (analyses) is refused only when QUEUE_MAX *other* events wait: heavy ones do
  not count against the analyses' room.

The refusal is an ordinary error answer with a message saying what to do.
"""
from __future__ import annotations

from . import limits

# events whose work is long or large; each session may have one waiting in the queue
HEAVY = frozenset({"train", "evaluate", "sanity", "scores_full", "export"})


def _events(queue):
    """(waiting, running) events of the queue, each a list."""
    waiting = [e for q in list(queue.event_queue_per_concurrency_id.values())
               for e in list(q.queue)]
    running = [e for group in list(queue.active_jobs) if group for e in group]
    return waiting, running


def _api_name(event) -> str | None:
    return getattr(getattr(event, "fn", None), "api_name", None)


def refusal(queue, api_name: str | None, session: str | None) -> str | None:
    """Why an event of ``api_name`` from ``session`` may not join ``queue`` now (None: it
    may)."""
    waiting, _ = _events(queue)
    if api_name in HEAVY:
        if session:
            mine = [e for e in waiting if _api_name(e) in HEAVY and e.session_hash == session]
            if len(mine) >= limits.HEAVY_PER_SESSION:
                return (f"This session already has a long job waiting in the queue "
                        f"({_api_name(mine[0])}); each session may have "
                        f"{limits.HEAVY_PER_SESSION} waiting at a time. Wait for it to start "
                        "(or stop it), then try again.")
        if sum(_api_name(e) in HEAVY for e in waiting) >= limits.HEAVY_QUEUE_MAX:
            return (f"{limits.HEAVY_QUEUE_MAX} long jobs (training, evaluation, sanity checks, "
                    "exports) are already waiting; try again in a few minutes. Analyses are "
                    "not affected.")
        return None
    if sum(_api_name(e) not in HEAVY for e in waiting) >= limits.QUEUE_MAX:
        return (f"The server is very busy ({limits.QUEUE_MAX} analyses waiting); try again in a "
                "minute.")
    return None


def install(demo) -> None:
    """Admit every request to ``demo``'s queue through :func:`refusal` (after ``demo.queue``);
    Gradio's own single limit is lifted (each group has its own here)."""
    queue = demo._queue  # Gradio 6 has no hook before an event is queued
    if getattr(queue.push, "_attnviz", False):
        return
    queue.max_size = None
    original = queue.push

    async def push(body, request, username):
        fn = demo.fns.get(body.fn_index) if body.fn_index is not None else None
        why = refusal(queue, getattr(fn, "api_name", None), body.session_hash)
        if why is not None:
            return False, why, "queue_full"
        return await original(body, request, username)
    push._attnviz = True
    queue.push = push
