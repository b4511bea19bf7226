"""The ``attnviz`` command: ``inspect`` on a folder writes overlays, figures (opening offline),
scores, maps and a manifest per image (the app's export layout: tests/test_export.py) and
reports unreadable files; the other commands reach their modules; pyproject installs the
command."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnviz import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_inspect_a_folder(tmp_path, example_paths, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("star", "ring"):
        (src / f"{name}.png").write_bytes(example_paths[name].read_bytes())
    Image.fromarray(np.full((90, 60, 3), 200, np.uint8)).save(src / "tall.jpg")
    (src / "broken.png").write_text("not an image")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    rc = cli.main(["inspect", str(src), "--model", "lite_cbam", "--out", str(out), "--quiet",
                   "--batch-size", "2", "--steps", "4"])
    assert rc == 1  # one file could not be read
    err = capsys.readouterr().err
    assert "broken.png" in err and "skipped" in err
    index = json.loads((out / "index.json").read_text())
    assert [d["folder"] for d in index["images"]] == ["ring", "star", "tall"]
    assert [Path(d["image"]).name for d in index["failed"]] == ["broken.png"]
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    for d in index["images"]:
        folder = out / d["folder"]
        overlays = sorted(p.name for p in (folder / "overlays").glob("*.png"))
        assert len(overlays) == 5 and "attribution_gradcam.png" in overlays  # 4 CBAM + Grad-CAM
        drawn = Image.open(folder / "overlays" / overlays[0])
        original = Image.open(d["image"])
        k = drawn.width // original.width  # small images are drawn enlarged by whole pixels
        assert drawn.width == k * original.width and k * max(original.size) >= 512
        assert drawn.height > k * original.height  # + colour bar
        html = sorted((folder / "figures").glob("*.html"))
        assert html and all('src="plotly.min.js"' in p.read_text() for p in html)
        assert "cdn.plot.ly" not in html[0].read_text()
        # plotly.js beside the figures: one copy on disk, linked into every image's folder
        assert (folder / "figures" / "plotly.min.js").stat().st_ino == \
            (out / "plotly.min.js").stat().st_ino
        manifest = json.loads((folder / "manifest.json").read_text())
        assert {f["path"] for f in manifest["files"]} == \
            {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        s = json.loads((folder / "scores.json").read_text())
        assert s["model"] == "lite_cbam" and s["top_k"][0][0] == d["prediction"]
        assert 0 <= s["scores"]["deletion_auc"]["gradcam"] <= 1
        with np.load(folder / "maps.npz") as z:
            assert "attribution__gradcam__raw" in z.files and len(z.files) >= 6
    assert index["images"][1]["prediction"] == "star"


def test_inspect_refuses_a_missing_path(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["inspect", str(tmp_path / "nope"), "--model", "lite_cbam", "--out",
                  str(tmp_path / "o")])


def test_other_commands_reach_their_modules(capsys):
    for command in ("train", "evaluate", "bench"):
        with pytest.raises(SystemExit) as e:
            cli.main([command, "--help"])
        assert e.value.code == 0
        assert f"python -m attnviz.{command}" in capsys.readouterr().out


def test_pyproject_installs_the_command_with_an_spdx_license():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["attnviz"] == "attnviz.cli:main"
    assert meta["project"]["license"] == "Apache-2.0"  # SPDX: no setuptools deprecation warning
