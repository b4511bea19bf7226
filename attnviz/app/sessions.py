"""Sessions: each browser or API session's last analysis, in one store bounded in memory
(least recently used dropped first), freed when its page closes or its state expires.

    sess = SESSIONS.add(Session(analysis, "lite_cbam", "gradcam", display))
    use(sess)                  # a handler marks the session it reads as used
    SESSIONS.stats()           # {"sessions", "mb", "max_mb", "evicted", "freed", "idle_freed"}
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from .. import errors as E


@dataclass
class Session:
    """The last analysis of one browser session (kept in ``gr.State``): what export, the
    affinity explorer, re-scaling and the score table need.

    A session is registered in :data:`SESSIONS` by whoever makes it (``SESSIONS.add(sess)``),
    which bounds what all sessions hold together (each counted with its image, maps and
    attributions): when the total passes ATTNVIZ_SESSION_MEMORY_MB the least recently used
    sessions lose their analysis, and any later use of ``analysis`` or ``display`` raises an
    AttnvizError saying to analyse again. A handler that uses a session marks it used with
    :func:`use`. A session's analysis is also freed when its browser leaves and when its
    ``gr.State`` expires."""

    analysis: object  # attnviz.inspect.Analysis (records and raw attributions on the CPU)
    model_name: str
    method: str  # the attribution the user asked for
    display: np.ndarray  # the image as sent to the browser (fit to 512)
    image_name: str = "image"
    mask: np.ndarray | None = None  # object mask: uploaded, or the shipped example's
    example: str | None = None
    query: tuple | None = None  # (x, y) in original-image pixels
    head: str | None = None  # the Affinity tab's head choice (views.head_choices)
    scores: dict = field(default_factory=dict)
    agreements: dict = field(default_factory=dict)  # {(tap, method): Spearman rho}, computed once
    badge: str = ""
    version: int = 0
    request: tuple | None = None  # (image, model, method) this analysis answers
    drawn: tuple | None = None  # the (scale, selection) the kind tabs were last drawn for
    tabs_drawn: set = field(default_factory=set)  # the (scale, tab) whose contents were drawn
    owner: str | None = None  # the Gradio session it belongs to (set by SessionStore.add)
    target: int | None = None  # the class asked for (None: the prediction)
    layer: str | None = None  # the CAM methods' layer asked for (None: the model's default)
    mask_source: str | None = None  # "uploaded", "example" or None (no mask)
    links: dict | None = None  # a relational example's ground truth (examples.known_links)
    generation: int = 0  # when its analysis started (next_generation): a later one is larger

    @property
    def scale(self) -> float:
        """Display pixels per original pixel."""
        return self.display.shape[1] / self.analysis.image.shape[1]

    @property
    def dropped(self) -> bool:
        return isinstance(self.analysis, _Dropped)

    def nbytes(self) -> int:
        """Bytes held by the analysis (image, maps, attributions) and the display copy."""
        if self.dropped:
            return 0
        a = self.analysis
        n = self.display.nbytes + (self.mask.nbytes if self.mask is not None else 0)
        n += getattr(getattr(a, "image", None), "nbytes", 0)
        for r in getattr(a, "maps", ()):
            n += r.tensor.numel() * r.tensor.element_size()
        for att in getattr(a, "attributions", {}).values():
            n += att.raw.numel() * att.raw.element_size()
            n += getattr(att.map, "nbytes", 0)
        return int(n)


class _Dropped:
    """Stands in for a session's freed analysis: any use says what happened and what to do."""

    def __init__(self, why: str):
        self._why = why

    def __getattr__(self, name):
        raise E.AttnvizError(self._why)


DROPPED_LRU = ("This analysis was dropped to free server memory (the server keeps "
               "{mb:.0f} MB of analyses for all sessions together and drops the least recently "
               "used first). Press Analyse to run it again.")
DROPPED_LEFT = "This analysis was freed when its page was closed. Press Analyse to run it again."
DROPPED_IDLE = ("This analysis was freed after {s:.0f} s unused (a session without a page keeps "
                "its analysis that long). Run the analysis again.")


def _drop(sess, why: str) -> None:
    """Replace a session's analysis and display image by what says why they went."""
    sess.analysis = sess.display = _Dropped(why)


# sessions that opened the page (their load event ran): the others are API sessions
PAGES: OrderedDict[str, None] = OrderedDict()
PAGES_MAX = 10_000
_PAGES_LOCK = threading.Lock()


def mark_page(request=None) -> None:
    """Record the current request's session as a page's (called by the page's load event)."""
    sid = getattr(request, "session_hash", None) or request_session()
    if not sid:
        return
    with _PAGES_LOCK:
        PAGES[sid] = None
        PAGES.move_to_end(sid)
        while len(PAGES) > PAGES_MAX:
            PAGES.popitem(last=False)


def request_session() -> str | None:
    """The current Gradio request's session id, or None outside a request."""
    try:
        from gradio.context import LocalContext
        req = LocalContext.request.get(None)
    except Exception:  # noqa: BLE001 - outside Gradio
        return None
    return getattr(req, "session_hash", None) if req is not None else None


class SessionStore:
    """Every session's current analysis, least recently used first, within ``max_mb`` in all.

    One entry per browser / API session (a new analysis replaces the session's previous one);
    adding one evicts the least recently used others until the total fits (the newest is kept
    even alone over the limit)."""

    def __init__(self, max_mb: float, api_idle_seconds: float = float("inf")):
        self.max_bytes = int(max_mb * 2**20)
        self.api_idle_seconds = api_idle_seconds
        self._lock = threading.Lock()
        self._entries: OrderedDict[object, tuple[Session, int]] = OrderedDict()
        self._used: dict[object, float] = {}
        self.evicted = 0
        self.freed = 0
        self.idle = 0

    def _sweep_idle(self) -> None:
        """(Under the lock.) Drop the analyses of sessions without a page idle too long."""
        now = time.time()
        for key in [k for k, t in self._used.items()
                    if now - t > self.api_idle_seconds and k not in PAGES]:
            sess, _ = self._entries.pop(key)
            del self._used[key]
            self.idle += 1
            _drop(sess, DROPPED_IDLE.format(s=self.api_idle_seconds))

    def _key(self, sess) -> object:
        return sess.owner or id(sess)

    def add(self, sess: Session) -> Session:
        """Register a new session's analysis (the current request's session's; it replaces
        that session's previous one, unless that one started later: then ``sess`` gives way and
        is not registered, and its page must not show it); returns ``sess``."""
        sess.owner = request_session()
        size = sess.nbytes()
        with self._lock:
            key = self._key(sess)
            held = self._entries.get(key)
            if held is not None and held[0].generation > sess.generation:
                # an analysis that started before the one this session holds ends after it:
                # it gives way (its page never shows it), the newer one stays
                return sess
            self._entries.pop(key, None)  # the session's previous analysis: gr.State drops it
            self._entries[key] = (sess, size)
            self._used[key] = time.time()
            self._sweep_idle()
            total = sum(n for _, n in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                old_key, (old, n) = self._entries.popitem(last=False)
                self._used.pop(old_key, None)
                total -= n
                self.evicted += 1
                _drop(old, DROPPED_LRU.format(mb=self.max_bytes / 2**20))
        return sess

    def touch(self, sess) -> None:
        key = self._key(sess)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] is sess:
                self._entries.move_to_end(key)
                self._used[key] = time.time()

    def latest(self, owner) -> Session | None:
        """The analysis held for Gradio session ``owner`` (None when none or dropped)."""
        with self._lock:
            hit = self._entries.get(owner) if owner else None
        return hit[0] if hit is not None and not hit[0].dropped else None

    def resize(self, sess) -> None:
        """Re-count a session whose analysis grew (a slow attribution added)."""
        with self._lock:
            key = self._key(sess)
            if key in self._entries and self._entries[key][0] is sess:
                self._entries[key] = (sess, sess.nbytes())

    def free(self, sess=None, owner: str | None = None) -> None:
        """Free one session's analysis (its gr.State expired) or a browser session's (it left)."""
        with self._lock:
            if sess is not None:
                key = self._key(sess)
                hit = self._entries.get(key)
                if hit is None or hit[0] is not sess:
                    return
            else:
                key = owner
            hit = self._entries.pop(key, None)
            self._used.pop(key, None)
            if hit is not None:
                self.freed += 1
                _drop(hit[0], DROPPED_LEFT)

    def stats(self) -> dict:
        with self._lock:
            self._sweep_idle()
            total = sum(n for _, n in self._entries.values())
            return {"sessions": len(self._entries), "mb": round(total / 2**20, 1),
                    "max_mb": round(self.max_bytes / 2**20, 1), "evicted": self.evicted,
                    "freed": self.freed, "idle_freed": self.idle}


def _session_memory_mb() -> float:
    from .limits import SESSION_MEMORY_MB
    return SESSION_MEMORY_MB


def _api_idle_seconds() -> float:
    from .limits import API_SESSION_IDLE_SECONDS
    return API_SESSION_IDLE_SECONDS


SESSIONS = SessionStore(_session_memory_mb(), _api_idle_seconds())


_HELD: dict[int, list] = {}  # id(session) -> [lock, holders]
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def exclusive(sess):
    """One step at a time on ``sess`` (two chained events of one page that would compute the
    same thing: the second finds it done)."""
    key = id(sess)
    with _HELD_LOCK:
        entry = _HELD.setdefault(key, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _HELD_LOCK:
            entry[1] -= 1
            if entry[1] == 0:
                _HELD.pop(key, None)


def use(sess):
    """Mark ``sess`` (a handler's ``gr.State`` input) as just used; returns it unchanged.
    A None or non-session value passes through."""
    if isinstance(sess, Session):
        SESSIONS.touch(sess)
    return sess


def free_session(sess) -> None:
    """gr.State's delete_callback: the state expired or its session closed."""
    if isinstance(sess, Session):
        SESSIONS.free(sess)


def free_request_session(request=None) -> None:
    """demo.unload: the browser left; free its analysis now (Gradio keeps closed sessions'
    state for an hour)."""
    sid = getattr(request, "session_hash", None) or request_session()
    if sid:
        SESSIONS.free(owner=sid)
        NEWEST.forget(sid)


_GENERATIONS = itertools.count(1)


def next_generation() -> int:
    """A new analysis starts: its generation, larger than every earlier one's (all pages)."""
    return next(_GENERATIONS)  # one C call: atomic under the GIL


class NewestRequests:
    """The newest analysis each page asked for: its request key (:func:`.analysis.request_key`),
    noted when the page's inputs change, outside the queue, so it is known at once even while
    an earlier analysis of the page runs or waits. That earlier analysis, and its chained steps
    (kind tabs, slow attribution, scores), are then superseded: they draw nothing. A session
    that never noted a request (API clients) is never superseded by a key.

    And the generation (:func:`next_generation`, taken when an analysis starts) of the analysis
    each page shows: an analysis writes the page's state only if it started after the one
    shown (:meth:`show`), a chained step only while its analysis is still the one shown
    (:meth:`current`): a step of an earlier analysis that ends after a newer analysis was drawn
    writes nothing back. Bounded: the least recently used pages are forgotten first."""

    HISTORY = 16  # the keys a page noted before its newest one (stale requests)

    def __init__(self, max_pages: int = PAGES_MAX):
        self._newest: OrderedDict[str, tuple] = OrderedDict()
        self._older: dict[str, deque] = {}
        self._shown: OrderedDict[str, int] = OrderedDict()  # page -> generation it shows
        self._lock = threading.Lock()
        self.max_pages = max_pages

    def note(self, sid: str | None, key: tuple) -> None:
        if not sid:
            return
        with self._lock:
            self._note(sid, key)

    def _note(self, sid: str, key: tuple) -> None:
        old = self._newest.get(sid)
        if old is not None and old != key:
            self._older.setdefault(sid, deque(maxlen=self.HISTORY)).append(old)
        self._newest[sid] = key
        self._newest.move_to_end(sid)
        while len(self._newest) > self.max_pages:
            gone, _ = self._newest.popitem(last=False)
            self._older.pop(gone, None)

    def claim(self, sid: str | None, key: tuple) -> bool:
        """Whether a queued analysis of ``key`` should run: False when the page has since asked
        for another analysis (``key`` is among the ones it asked for before its newest). A key
        the page has not noted yet is newer than every noted one (its own note, sent outside
        the queue, can arrive after the queued request under load): it is noted now and runs."""
        if not sid:
            return True
        with self._lock:
            newest = self._newest.get(sid)
            if newest is not None and newest != key and key in self._older.get(sid, ()):
                return False
            self._note(sid, key)
            return True

    def superseded(self, sid: str | None, key) -> bool:
        """Whether page ``sid`` has since asked for another analysis than ``key``."""
        with self._lock:
            newest = self._newest.get(sid) if sid else None
        return newest is not None and newest != key

    def show(self, sid: str | None, generation: int) -> bool:
        """An analysis of ``generation`` is about to be drawn on page ``sid``: True (and it is
        now the page's current one) unless the page already shows an analysis that started
        later (then it must write nothing). Always True outside a page (``sid`` None)."""
        if not sid:
            return True
        with self._lock:
            if generation < self._shown.get(sid, 0):
                return False
            self._shown[sid] = generation
            self._shown.move_to_end(sid)
            while len(self._shown) > self.max_pages:
                self._shown.popitem(last=False)
            return True

    def current(self, sid: str | None, generation: int) -> bool:
        """Whether page ``sid`` still shows the analysis of ``generation`` (a page that never
        showed one through :meth:`show`, or none: True), so a chained step of that analysis
        may write its outputs and the page's state."""
        with self._lock:
            shown = self._shown.get(sid) if sid else None
        return shown is None or shown == generation

    def forget(self, sid: str) -> None:
        with self._lock:
            self._newest.pop(sid, None)
            self._older.pop(sid, None)
            self._shown.pop(sid, None)


NEWEST = NewestRequests()
