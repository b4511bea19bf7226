"""The Statistics tab's list of link-task checkpoints is kept while the models folder and its
link-task sub-folders are unchanged (their mtimes): a request stats three folders instead of
globbing them, and a checkpoint added (or removed) is still seen on the next request."""
from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("gradio")

from attnviz.app import stats_tab  # noqa: E402
from attnviz.models import weights  # noqa: E402

HOUR_AGO = time.time() - 3600


def _age(*folders) -> None:
    """Each folder's mtime an hour back (a listing taken now is trusted)."""
    for f in folders:
        os.utime(f, (HOUR_AGO, HOUR_AGO))


@pytest.fixture
def models(tmp_path, monkeypatch):
    """A models folder of its own: one 64 px checkpoint and a rel128/ folder with one."""
    (tmp_path / "rel128").mkdir()
    (tmp_path / "lite_se_rel.safetensors").write_bytes(b"")
    (tmp_path / "rel128" / "lite_sagan_rel.safetensors").write_bytes(b"")
    (tmp_path / "lite_se.safetensors").write_bytes(b"")  # not a link-task checkpoint
    _age(tmp_path, tmp_path / "rel128")
    monkeypatch.setattr(weights, "MODELS_DIR", tmp_path)
    return tmp_path


def test_the_listing_is_kept_while_the_folders_are_unchanged(models):
    first = stats_tab.relational_names()
    assert first == ["lite_se_rel", "rel128/lite_sagan_rel"]
    # a file slipped in with the folder's mtime put back: only a new listing would show it, and
    # the request is answered from the one kept
    (models / "rel128" / "lite_cbam_rel.safetensors").write_bytes(b"")
    _age(models / "rel128")
    assert stats_tab.relational_names() == first
    first.append("changed by a caller")  # each request gets its own copy
    assert stats_tab.relational_names() == ["lite_se_rel", "rel128/lite_sagan_rel"]


def test_a_new_or_removed_checkpoint_is_seen(models):
    assert stats_tab.relational_names() == ["lite_se_rel", "rel128/lite_sagan_rel"]
    (models / "rel128" / "lite_cbam_rel.safetensors").write_bytes(b"")  # its folder changed
    assert stats_tab.relational_names() == ["lite_se_rel", "rel128/lite_cbam_rel",
                                            "rel128/lite_sagan_rel"]
    (models / "cue128").mkdir()  # a link-task folder that did not exist
    (models / "cue128" / "lite_sagan_cue.safetensors").write_bytes(b"")
    assert "cue128/lite_sagan_cue" in stats_tab.relational_names()
    (models / "lite_se_rel.safetensors").unlink()
    assert "lite_se_rel" not in stats_tab.relational_names()


def test_a_listing_taken_as_its_folder_changed_is_not_kept(models):
    """A folder changed within the clock's tick of the listing: a file added in that tick
    would leave the mtime as it was, so that listing is taken again next time."""
    (models / "rel128" / "lite_cbam_rel.safetensors").write_bytes(b"")  # mtime: now
    assert "rel128/lite_cbam_rel" in stats_tab.relational_names()
    now = os.stat(models / "rel128").st_mtime_ns
    (models / "rel128" / "lite_danet_rel.safetensors").write_bytes(b"")
    os.utime(models / "rel128", ns=(now, now))  # the same tick: the mtime unchanged
    assert "rel128/lite_danet_rel" in stats_tab.relational_names()


def test_the_shipped_link_task_checkpoints_are_listed():
    names = stats_tab.relational_names()
    assert stats_tab.DEFAULT_RELATIONAL in names
    assert names == stats_tab.relational_names()
