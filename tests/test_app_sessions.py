"""The app's session store (no server): bounded in memory, least recently used dropped first,
explicit registration and use (no attribute magic), a dropped analysis says why on any use."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gradio")

from attnviz.app.sessions import Session, SessionStore, use  # noqa: E402
from attnviz.errors import AttnvizError  # noqa: E402


class _Analysis:
    """Stands in for an Analysis' memory only (the store counts image, maps, attributions)."""

    def __init__(self, nbytes):
        self.image = np.zeros(nbytes, np.uint8)
        self.maps, self.attributions = [], {}


def _session(nbytes=1 << 20):
    return Session(_Analysis(nbytes), "lite_cbam", "gradcam", np.zeros((4, 4, 3), np.uint8))


def test_making_a_session_registers_nothing():
    store = SessionStore(max_mb=100)
    _session()
    assert store.stats()["sessions"] == 0


def test_store_drops_least_recently_used_and_says_why():
    store = SessionStore(max_mb=2.5)  # room for two 1 MB analyses
    a, b = store.add(_session()), store.add(_session())
    store.touch(a)  # a used after b: b is the least recently used
    c = store.add(_session())
    assert store.stats()["sessions"] == 2 and store.stats()["evicted"] == 1
    assert not a.dropped and not c.dropped and b.dropped
    for read in (lambda: b.analysis.image, lambda: b.display.shape):
        with pytest.raises(AttnvizError, match="dropped to free server memory"):
            read()
    assert b.nbytes() == 0


def test_use_marks_the_global_store(monkeypatch):
    from attnviz.app import sessions
    store = SessionStore(max_mb=2.5)
    monkeypatch.setattr(sessions, "SESSIONS", store)
    a, b = store.add(_session()), store.add(_session())
    assert use(a) is a and use(None) is None
    store.add(_session())
    assert b.dropped and not a.dropped


def test_free_releases_one_session():
    store = SessionStore(max_mb=100)
    a = store.add(_session())
    store.free(a)
    assert a.dropped and store.stats()["freed"] == 1 and store.stats()["sessions"] == 0
    with pytest.raises(AttnvizError, match="page was closed"):
        _ = a.analysis.maps
