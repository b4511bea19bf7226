"""Moved: the app's models and sessions are split by job. Import from :mod:`.catalogue` (which
models exist and their badges), :mod:`.model_cache` (the LRU of loaded models, precision) or
:mod:`.sessions` (each session's analysis). This module only re-exports their names for code
written before the split."""
from __future__ import annotations

from .catalogue import *  # noqa: F403
from .catalogue import BADGE_USER, Entry, find_entry, parameter_count  # noqa: F401
from .model_cache import *  # noqa: F403
from .model_cache import DEVICE, MODELS, Loaded, ModelCache, _decide_amp, _load  # noqa: F401
from .sessions import *  # noqa: F403
from .sessions import SESSIONS, Session, request_session  # noqa: F401
