"""Gradio's per-session copy of every component's config, built when it is first read.

Gradio 6.31 makes a ``SessionState`` for every new session, and an API call without a session
(``/gradio_api/call/<api>``, ``gradio_client``) is a new session each time. Its ``__init__``
builds the config of **every** block of the app (``config_for_block``: props, API info) so
that a deep link can later recreate the page: measured with py-spy over 150 ``/inspect`` calls
to this app (a few hundred components), 13 ms of the server's ~70 ms of CPU per call, paid by
``/models`` as much as by ``/inspect``, and held in memory for up to
``state_session_capacity`` sessions. Nothing but the deep-link route reads those configs
(``SessionState.components``); every other use fills its own entry on demand
(``_update_value_in_config``) or overwrites it (``__setitem__``, ``_update_config``).

:func:`install` makes ``config_values`` start empty and builds the missing entries when
``components`` is read, in the blocks' order: the same configs, built only for the sessions
that ask for them. The replacement runs only on the Gradio it was written for (the attributes
it relies on are checked), else Gradio's own ``__init__`` stays.
"""
from __future__ import annotations

import os
from copy import copy

from gradio import state_holder

_original_init = state_holder.SessionState.__init__
_original_components = state_holder.SessionState.components


def _lazy_init(self, blocks) -> None:
    # Gradio's SessionState.__init__ without the eager config of every block
    self.blocks_config = copy(blocks.default_config)
    self._config_order = [k for k in self.blocks_config.blocks if k in blocks.blocks]
    self.config_values = {}
    self.state_data = {}
    self._state_ttl = {}
    self.is_closed = False
    self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600


def _components(self):
    """Every block's config (the deep-link route reads these), the missing ones built now."""
    order = getattr(self, "_config_order", None)
    if order is None:  # a session made before install()
        yield from _original_components.fget(self)
        return
    blocks = self.blocks_config.blocks
    for k in order:
        if k not in self.config_values and k in blocks:
            self.config_values[k] = self.blocks_config.config_for_block(k, [], blocks[k])
    done = set(order)
    for k in order + [k for k in self.config_values if k not in done]:
        config = self.config_values.get(k)
        if config:
            yield config


def supported() -> bool:
    """Whether this Gradio's SessionState has what the replacement relies on."""
    s = state_holder.SessionState
    return all(hasattr(s, a) for a in ("_update_config", "_update_value_in_config",
                                       "components", "state_components")) \
        and "config_values" in (s.__init__.__code__.co_names or ())


def install() -> bool:
    """Build the sessions' configs lazily (idempotent); False where this Gradio is not the one
    the replacement was written for (Gradio's own behaviour is kept)."""
    s = state_holder.SessionState
    if s.__init__ is _lazy_init:
        return True
    if not supported():
        return False
    s.__init__ = _lazy_init
    s.components = property(_components)
    return True


def uninstall() -> None:
    """Gradio's own behaviour back (the tests compare both)."""
    s = state_holder.SessionState
    s.__init__ = _original_init
    s.components = _original_components
