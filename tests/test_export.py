"""One export writer (:mod:`attnviz.render.export`) for the CLI's folder and the app's zip: the
same analysis gives the same files with the same bytes in both (the app adds only its session's
fields to scores.json), the manifest lists exactly the files present, and the real CLI and the
app's export name the same files for the same image and model."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnviz import cli
from attnviz.render.export import MANIFEST, PLOTLY_PATH, export_files, plotly_js, write_analysis

MODEL = "lite_nonlocal"  # spatial, channel and affinity maps: every kind of overlay and figure


@pytest.fixture(scope="module")
def session():
    from attnviz.app.analysis import analyse
    from attnviz.app.examples import ensure_examples
    path = next(p for p in ensure_examples() if p.stem == "ring")
    return analyse(str(path), MODEL, "gradcam")  # no query chosen: the centre, as the CLI


def _zip_files(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _manifest_paths(files: dict[str, bytes]) -> set[str]:
    return {f["path"] for f in json.loads(files[MANIFEST])["files"]}


def test_cli_folder_and_app_zip_hold_the_same_files(session, tmp_path):
    from attnviz.app.export import build_zip, session_fields
    plotly_file = tmp_path / "plotly.min.js"
    plotly_file.write_bytes(plotly_js())
    cli._write_analysis(session.analysis, tmp_path / "cli", plotly_file)  # as `attnviz inspect`
    folder = _folder_files(tmp_path / "cli")
    zipped = _zip_files(build_zip(session))
    assert set(folder) == set(zipped)
    assert {"image.png", "scores.json", "maps.npz", "README.txt", MANIFEST, PLOTLY_PATH} <= \
        set(folder)
    assert any(n.startswith("overlays/") and n.endswith("_affinity.png") for n in folder)
    assert "overlays/attribution_gradcam.png" in folder
    for name in folder:
        if name not in ("scores.json", MANIFEST):
            assert folder[name] == zipped[name], name  # byte for byte
    cli_scores, app_scores = json.loads(folder["scores.json"]), json.loads(zipped["scores.json"])
    assert {k: app_scores[k] for k in cli_scores} == cli_scores  # the analysis's own, equal
    assert set(app_scores) - set(cli_scores) == set(session_fields(session))  # + the session's
    assert cli_scores["query"] == [63.5, 63.5] and cli_scores["model"] == MODEL  # the centre
    # the manifests list the same files, saying the same of each (scores.json's size aside)
    cli_m, app_m = json.loads(folder[MANIFEST]), json.loads(zipped[MANIFEST])
    strip = [[{k: v for k, v in f.items() if not (f["path"] == "scores.json" and k == "bytes")}
              for f in m["files"]] for m in (cli_m, app_m)]
    assert strip[0] == strip[1]
    for files in (folder, zipped):
        assert _manifest_paths(files) == set(files)  # exactly the files present
        for f in json.loads(files[MANIFEST])["files"]:
            assert f["bytes"] is None or f["bytes"] == len(files[f["path"]]), f


def test_files_hold_what_the_manifest_says(session, tmp_path):
    write_analysis(session.analysis, tmp_path / "out", query=(37, 81))
    out = tmp_path / "out"
    a = session.analysis
    with np.load(out / "maps.npz") as z:
        names = set(z.files)
        m = z["attribution__gradcam__map"]
        assert len([n for n in names if n[:2].isdigit()]) == len(a.maps)
        assert {"attribution__gradcam__raw", "attribution__gradcam__map", "probs"} <= names
        image = Image.open(out / "image.png")
        assert m.shape == (image.height, image.width) and m.dtype == np.float32 and m.min() >= 0
        np.testing.assert_allclose(z["probs"].sum(), 1, atol=1e-4)
    html = sorted((out / "figures").glob("*.html"))
    assert html and all('src="plotly.min.js"' in p.read_text() for p in html)
    assert "cdn.plot.ly" not in html[0].read_text()
    for p in (out / "overlays").glob("*.png"):
        Image.open(p).verify()
    assert (out / "README.txt").read_text().startswith("    image.png")
    # the same analysis written twice: the same bytes (no random ids, no timestamps)
    assert json.loads((out / "scores.json").read_text())["query"] == [37.0, 81.0]
    again = {f.path: f.data for f in export_files(a, query=(37, 81))}
    assert again == _folder_files(out)


@pytest.mark.slow  # runs the command (analysis and deletion / insertion scores)
def test_the_real_cli_and_the_app_name_the_same_files(session, tmp_path, capsys):
    from attnviz.app.export import build_zip
    image = tmp_path / "in" / "ring.png"
    image.parent.mkdir()
    image.write_bytes(_example("ring").read_bytes())
    out = tmp_path / "out"
    assert cli.main(["inspect", str(image), "--model", MODEL, "--out", str(out), "--quiet",
                     "--steps", "4"]) == 0
    folder = _folder_files(out / "ring")
    zipped = _zip_files(build_zip(session))
    assert set(folder) == set(zipped)
    assert _manifest_paths(folder) == set(folder)
    # every image's plotly.js is one copy on disk (a hard link) where the file system allows
    assert (out / "ring" / PLOTLY_PATH).read_bytes() == (out / "plotly.min.js").read_bytes()


def _example(stem: str) -> Path:
    from attnviz.app.examples import ensure_examples
    return next(p for p in ensure_examples() if p.stem == stem)


def test_a_zip_takes_the_same_files(session, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        manifest = write_analysis(session.analysis, z)
    files = _zip_files(buf)
    assert {f["path"] for f in manifest["files"]} == set(files)
    write_analysis(session.analysis, tmp_path / "f")
    assert _folder_files(tmp_path / "f") == files


def test_a_folder_written_again_holds_only_the_new_files(session, tmp_path):
    """An earlier export's files go (a stale overlay of another model, say); files the export
    did not write stay, and a manifest cannot name a file outside the folder."""
    folder = tmp_path / "f"
    write_analysis(session.analysis, folder)
    (folder / "overlays" / "99_old_model_spatial.png").write_bytes(b"stale")
    (folder / "notes.txt").write_text("the user's own file")
    outside = tmp_path / "keep.txt"
    outside.write_text("outside the folder")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] += [{"path": "overlays/99_old_model_spatial.png"}, {"path": "../keep.txt"}]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    write_analysis(session.analysis, folder)
    files = _folder_files(folder)
    assert set(files) == _manifest_paths(files) | {"notes.txt"}
    assert outside.read_text() == "outside the folder"
