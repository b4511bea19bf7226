"""Gradio's per-session configs built lazily (attnviz/app/session_configs.py): a session reads
the same configs as Gradio's eager ones, before and after updates, and a new session builds
none until they are read."""
from __future__ import annotations

import gradio as gr
import pytest
from gradio import state_holder

from attnviz.app import session_configs


def _blocks():
    with gr.Blocks() as demo:
        img = gr.Image(label="a", interactive=False)
        txt = gr.Textbox("hello", label="t")
        st = gr.State(5)
        btn = gr.Button("go")
        btn.click(lambda s: s, st, txt)
    return demo, img, txt, st


def _session(demo, lazy: bool):
    if lazy:
        session_configs.install()
    else:
        session_configs.uninstall()
    try:
        return state_holder.SessionState(demo)
    finally:
        session_configs.install()


def _configs(sess):
    return [dict(c, props=dict(c.get("props", {}))) for c in sess.components]


@pytest.fixture(autouse=True)
def _restore():
    yield
    session_configs.install()


def test_lazy_session_reads_the_same_configs_as_gradios():
    assert session_configs.supported()
    demo, img, txt, st = _blocks()
    eager, lazy = _session(demo, False), _session(demo, True)
    assert lazy.config_values == {}  # nothing built for a session that never reads them
    assert _configs(lazy) == _configs(eager) and len(_configs(eager)) >= 4
    # the same after an update of a component and a value written into its config
    for sess in (eager, lazy):
        sess[img._id] = gr.Image(label="b", interactive=False, render=False)
        sess._update_config(img._id)  # as Blocks.postprocess_data does after an update
        sess._update_value_in_config(txt._id, "world")
        sess[st._id] = 7
    assert _configs(lazy) == _configs(eager)
    by_id = {c["id"]: c for c in lazy.components}
    assert by_id[img._id]["props"]["label"] == "b"
    assert by_id[txt._id]["props"]["value"] == "world"
    assert lazy[st._id] == 7 and eager[st._id] == 7


def test_a_value_written_before_any_read_builds_only_its_own_config():
    demo, img, txt, st = _blocks()
    sess = _session(demo, True)
    sess._update_value_in_config(txt._id, "x")
    assert list(sess.config_values) == [txt._id]
    assert sess.config_values[txt._id]["props"]["value"] == "x"
    # the state's default is deep-copied per session, as Gradio does
    assert sess[st._id] == 5


def test_install_is_idempotent_and_uninstall_restores_gradios_init():
    assert session_configs.install() and session_configs.install()
    assert state_holder.SessionState.__init__ is session_configs._lazy_init
    session_configs.uninstall()
    assert state_holder.SessionState.__init__ is session_configs._original_init
