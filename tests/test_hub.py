"""Hugging Face-hosted weights through ``huggingface_hub``, against a loopback server standing in
for the Hub (HF_ENDPOINT): the Hub cache (one request, then none), offline mode, revision
pinning, resumed downloads, the sha256 check; downloads on by default on a Space (SPACE_ID)."""
import hashlib
import http.server
import threading
import typing

import pytest
import torch
from safetensors.torch import save_file

import attnviz
from attnviz.models import sources, weights
from attnviz.errors import DownloadDisabledError, WeightsError
from attnviz.models import hub

COMMIT = "a" * 40
OTHER = "b" * 40


class FakeHub(http.server.BaseHTTPRequestHandler):
    """/{org}/{repo}/resolve/{revision}/{file}, with the headers huggingface_hub reads (commit,
    etag, size) and byte ranges; ``cut`` sends only the first half of the next GET."""

    files: typing.ClassVar[dict] = {}  # (repo, revision) -> {filename: bytes}
    log: typing.ClassVar[list] = []
    cut: typing.ClassVar[list] = [False]

    def log_message(self, *args):
        pass

    def _find(self):
        """((body, commit), None) for a file, else (None, the Hub's X-Error-Code)."""
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return None, "RepoNotFound"
        repo, rev, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        revs = {r: f for (rp, r), f in self.files.items() if rp == repo}
        if not revs:
            return None, "RepoNotFound"
        if rev not in revs:
            return None, "RevisionNotFound"
        if name not in revs[rev]:
            return None, "EntryNotFound"
        commit = COMMIT if rev in ("main", COMMIT) else OTHER
        return (revs[rev][name], commit), None

    def _head(self, body, commit, status=200, extra=None):
        self.send_response(status)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        for k, v in (extra or {}).items():
            self.send_header(k, v)

    def do_HEAD(self):
        self.log.append(("HEAD", self.path, None))
        hit, err = self._find()
        if hit is None:
            self.send_response(404)
            self.send_header("X-Error-Code", err)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, commit = hit
        self._head(body, commit, extra={"Content-Length": str(len(body))})
        self.end_headers()

    def do_GET(self):
        rng = self.headers.get("Range")
        self.log.append(("GET", self.path, rng))
        hit, err = self._find()
        if hit is None:
            self.send_response(404)
            self.send_header("X-Error-Code", err)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, commit = hit
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        part = body[start:]
        if start:
            self._head(body, commit, 206, {"Content-Range": f"bytes {start}-{len(body) - 1}/"
                                                           f"{len(body)}"})
        else:
            self._head(body, commit)
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.cut[0]:
            self.cut[0] = False
            self.wfile.write(part[:len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    FakeHub.files, FakeHub.log, FakeHub.cut = {}, [], [False]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{httpd.server_port}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))
    for var in (sources.ALLOW_ENV, "SPACE_ID", "HF_HUB_OFFLINE", "ATTNVIZ_HF_REVISION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(weights, "MODELS_DIR", tmp_path / "models")
    try:
        yield FakeHub
    finally:
        httpd.shutdown()
        httpd.server_close()


def _weights(name="lite_se", seed=1):
    model = attnviz.create_model(name, seed=seed)
    path = f"/tmp/attnviz-hub-{name}-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    with open(path, "rb") as f:
        return model.state_dict(), f.read()


@pytest.fixture
def hub_source(fake_hub, monkeypatch):
    sd, body = _weights()
    fake_hub.files[("timm/lite_se.test", "main")] = {"model.safetensors": body}
    src = sources.WeightSource(model="lite_se", url="https://huggingface.co/timm/lite_se.test/"
                               "resolve/main/model.safetensors", filename="unused.safetensors",
                               origin="timm (Hugging Face Hub)", tag="lite_se.test",
                               license="none", sha256=hashlib.sha256(body).hexdigest(),
                               hf_repo="timm/lite_se.test", hf_file="model.safetensors")
    monkeypatch.setitem(sources.SOURCES, "lite_se", src)
    return sd, body, src


def _resolves(fake_hub) -> int:
    """Requests for files (huggingface_hub also asks the endpoint other things)."""
    return sum("/resolve/" in e[1] for e in fake_hub.log)


def _equal(model, sd):
    return all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())


def test_hub_weights_download_once_into_the_hub_cache(hub_source, fake_hub, monkeypatch,
                                                      tmp_path):
    sd, body, _ = hub_source
    with pytest.raises(DownloadDisabledError, match="ATTNVIZ_ALLOW_DOWNLOAD"):
        attnviz.create_model("lite_se", pretrained=True)
    assert _resolves(fake_hub) == 0
    monkeypatch.setenv(sources.ALLOW_ENV, "1")
    model = attnviz.create_model("lite_se", pretrained=True)
    assert _equal(model, sd) and model.info.trained
    gets = [e for e in fake_hub.log if e[0] == "GET" and "/resolve/" in e[1]]
    assert len(gets) == 1 and "/timm/lite_se.test/resolve/main/model.safetensors" in gets[0][1]
    assert "127.0.0.1" in model.info.weights_source  # the address it came from (HF_ENDPOINT)
    blobs = list((tmp_path / "hub").glob("models--timm--lite_se.test/blobs/*"))
    assert len(blobs) == 1 and blobs[0].read_bytes() == body
    assert not (tmp_path / "cache").exists()  # not the hand-written downloader's cache
    # cached: found without the network, even with downloads off
    monkeypatch.delenv(sources.ALLOW_ENV)
    n = _resolves(fake_hub)
    assert _equal(attnviz.create_model("lite_se", pretrained=True), sd)
    assert _resolves(fake_hub) == n


def test_offline_mode_uses_the_cache_or_says_so(hub_source, fake_hub, monkeypatch):
    _, _, src = hub_source
    monkeypatch.setenv(sources.ALLOW_ENV, "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE"):
        hub.fetch(src.hf_repo, src.hf_file)
    assert _resolves(fake_hub) == 0
    monkeypatch.delenv("HF_HUB_OFFLINE")
    path = hub.fetch(src.hf_repo, src.hf_file, sha256=src.sha256)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = _resolves(fake_hub)
    assert hub.fetch(src.hf_repo, src.hf_file) == path and _resolves(fake_hub) == n


def test_revision_is_pinned(fake_hub, monkeypatch):
    _, old = _weights(seed=1)
    _, new = _weights(seed=2)
    fake_hub.files[("org/w", "main")] = {"model.safetensors": new}
    fake_hub.files[("org/w", OTHER)] = {"model.safetensors": old}
    assert hub.fetch("org/w", "model.safetensors").read_bytes() == new
    assert hub.fetch("org/w", "model.safetensors", revision=OTHER).read_bytes() == old
    assert any(f"/resolve/{OTHER}/" in e[1] for e in fake_hub.log)
    with pytest.raises(WeightsError, match="not on the Hugging Face Hub"):
        hub.fetch("org/w", "model.safetensors", revision="no-such-tag")
    with pytest.raises(WeightsError, match="not on the Hugging Face Hub"):
        hub.fetch("org/missing", "model.safetensors")


def test_an_interrupted_download_resumes(fake_hub):
    """The connection drops half-way through a 24 MB file: the download continues from what was
    written (huggingface_hub writes in 10 MB chunks) with a Range request, and the result is
    whole and checked."""
    import os
    body = os.urandom(24 << 20)
    fake_hub.files[("org/r", "main")] = {"model.safetensors": body}
    fake_hub.cut[0] = True
    digest = hashlib.sha256(body).hexdigest()
    path = hub.fetch("org/r", "model.safetensors", sha256=digest)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    ranges = [e[2] for e in fake_hub.log if e[0] == "GET" and e[2]]
    assert ranges and int(ranges[0].split("=")[1].split("-")[0]) >= 10 << 20


def test_a_wrong_sha256_is_refused_and_removed(fake_hub, tmp_path):
    _, body = _weights(seed=4)
    fake_hub.files[("org/bad", "main")] = {"model.safetensors": body}
    with pytest.raises(WeightsError, match="sha256 is"):
        hub.fetch("org/bad", "model.safetensors", sha256="0" * 64)
    left = [p for p in (tmp_path / "hub").rglob("*") if p.is_file() or p.is_symlink()]
    assert not [p for p in left if "blobs" in p.parts or "snapshots" in p.parts], left
    assert hub.cached("org/bad", "model.safetensors") is None


@pytest.mark.slow  # huggingface_hub retries with a back-off (~20 s) before giving up
def test_unreachable_hub_is_a_clear_error(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(WeightsError, match="Could not reach the Hugging Face Hub"):
        hub.fetch("org/none", "model.safetensors", timeout=2)


def test_a_space_allows_the_known_downloads_by_default(monkeypatch):
    for var in (sources.ALLOW_ENV, "SPACE_ID"):
        monkeypatch.delenv(var, raising=False)
    assert not sources.downloads_allowed()
    monkeypatch.setenv("SPACE_ID", "someone/attnviz")
    assert sources.downloads_allowed()
    monkeypatch.setenv(sources.ALLOW_ENV, "0")  # the Space's owner can still turn them off
    assert not sources.downloads_allowed()


def test_the_known_timm_sources_go_through_the_hub():
    for name in ("resnet50", "seresnet50", "sknet50"):
        src = sources.SOURCES[name]
        assert src.hf_repo.startswith("timm/") and src.hf_file == "model.safetensors"
    assert sources.SOURCES["scnet50"].hf_repo is None  # the SCNet authors' own server
