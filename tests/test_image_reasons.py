"""Why an image was refused is data (``ImageError.reason``, an ``ImageReason`` the loader sets
where it raises), and the app heads its message by that reason alone, never by the message's
words; the messages users and API clients see are the loader's, headed as before ("not an image"
where the file is none)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")

from attnviz.app.errors import IMAGE_HEADS, to_gr_error  # noqa: E402
from attnviz.data.batch import as_input, image_paths  # noqa: E402
from attnviz.data.images import (check_jpeg_work, image_size, load_image,  # noqa: E402
                                 make_baseline, preprocess)
from attnviz.errors import ImageError, ImageReason  # noqa: E402

R = ImageReason
FORMATS = "Upload a PNG, JPEG, GIF, BMP, TIFF or WebP image."


def _png(h=40, w=40) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)).save(buf,
                                                                                         "PNG")
    return buf.getvalue()


def _refused(read) -> ImageError:
    with pytest.raises(ImageError) as e:
        read()
    return e.value


@pytest.fixture
def files(tmp_path):
    out = {"text": tmp_path / "notes.png", "empty": tmp_path / "empty.png",
           "cut": tmp_path / "cut.png", "folder": tmp_path / "folder.png"}
    out["text"].write_text("this is not an image")
    out["empty"].write_bytes(b"")
    whole = _png(200, 200)
    out["cut"].write_bytes(whole[:len(whole) // 2])
    out["folder"].mkdir()
    return out


def _cases(files):
    """(what, how it is read, the reason the loader must give): every place it raises."""
    tiny = np.zeros((4, 4, 3), np.uint8)
    return [
        ("a text file named .png", lambda: load_image(files["text"]), R.NOT_AN_IMAGE),
        ("its header only", lambda: image_size(files["text"]), R.NOT_AN_IMAGE),
        ("a PNG cut short", lambda: load_image(files["cut"]), R.UNDECODABLE),
        ("a PNG cut short, opened lazily", lambda: load_image(Image.open(files["cut"])),
         R.UNDECODABLE),
        ("an empty file", lambda: load_image(files["empty"]), R.UNREADABLE),
        ("empty bytes", lambda: load_image(b""), R.UNREADABLE),
        ("empty bytes, header only", lambda: image_size(b""), R.UNREADABLE),
        ("a missing file", lambda: load_image(files["text"].parent / "none.png"), R.UNREADABLE),
        ("a missing file, header only", lambda: image_size(files["text"].parent / "none.png"),
         R.UNREADABLE),
        ("a folder", lambda: load_image(files["folder"]), R.UNREADABLE),
        ("a folder of images that is none", lambda: image_paths(files["text"]), R.UNREADABLE),
        ("over the pixel limit", lambda: load_image(_png(), max_pixels=100), R.TOO_LARGE),
        ("under 8 x 8", lambda: load_image(tiny), R.TOO_SMALL),
        ("a JPEG of too many scans", lambda: check_jpeg_work(b"\xff\xd8" + b"\xff\xda\x00\x02"
                                                             * 200, (100, 100)), R.TOO_COSTLY),
        ("a number", lambda: load_image(12), R.UNSUPPORTED),
        ("an array of the wrong shape", lambda: load_image(np.zeros((3, 9, 9, 3))),
         R.UNSUPPORTED),
        ("an array with NaN", lambda: load_image(np.full((9, 9), np.nan)), R.UNSUPPORTED),
        ("an array of strings", lambda: load_image(np.full((9, 9), "a")), R.UNSUPPORTED),
        ("an empty batch", lambda: as_input(None, []), R.UNSUPPORTED),
        ("an unknown preprocessing mode", lambda: preprocess(None, _png(), mode="stretch"),
         R.BAD_OPTION),
        ("an unknown baseline", lambda: make_baseline(torch.zeros(1, 3, 8, 8), "plaid"),
         R.BAD_OPTION),
    ]


def test_the_loader_sets_a_reason_where_it_raises(files):
    for what, read, reason in _cases(files):
        assert _refused(read).reason is reason, what


def test_every_reason_has_a_head_and_the_head_follows_the_reason_alone():
    assert set(IMAGE_HEADS) == set(ImageReason)
    words = ("not an image", "decoded", "empty", "cannot read", "no such file", "folder")
    for reason in ImageReason:
        head = IMAGE_HEADS[reason]
        for msg in ("the file is odd", *words):  # the message's words change nothing
            err = to_gr_error(ImageError(msg, reason))
            assert err.message.startswith(f"{head}: "), (reason, msg, err.message)
            assert err.title == "Cannot use this file"
    assert ImageError("no reason given").reason is R.UNUSABLE
    import pickle
    back = pickle.loads(pickle.dumps(ImageError("too big", R.TOO_LARGE)))
    assert back.reason is R.TOO_LARGE and str(back) == "too big"
    assert to_gr_error(ImageError("not an image, decoded")).message.startswith(
        "This image cannot be used: ")


def test_the_messages_people_and_api_clients_see(files):
    """The loader's words under their head, as before: a file that is no image says "not an
    image" once (API clients see only the message), the formats are named once."""
    def shown(read) -> str:
        return to_gr_error(_refused(read)).message

    assert shown(lambda: load_image(files["text"])) == (
        "Upload refused: notes.png is not an image format that can be read (it must be a PNG, "
        "JPEG, GIF, BMP, TIFF or WebP file).")
    cut = shown(lambda: load_image(files["cut"]))
    assert cut.startswith("This file is not an image attnviz can read: cut.png could not be "
                          "decoded; it may be truncated or corrupt (") and cut.endswith(FORMATS)
    assert shown(lambda: load_image(files["empty"])) == (
        f"This file is not an image attnviz can read: empty.png is empty (0 bytes). {FORMATS}")
    assert shown(lambda: load_image(np.zeros((4, 4, 3), np.uint8))) == (
        f"This image cannot be used: the image is 4 x 4 pixels; at least 8 x 8 is needed. "
        f"{FORMATS}")
    for read in (lambda: load_image(files["text"]), lambda: load_image(files["cut"]),
                 lambda: load_image(files["empty"])):
        assert shown(read).lower().count("not an image") == 1
