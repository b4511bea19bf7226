"""Weights: released layouts load strictly; bad files are refused with a clear error and the model
unchanged; URLs download into the cache with a sha256 check (against a loopback server the test
starts); pretrained=True offline says how to supply the file."""
import hashlib
import http.server
import os
import re
import socket
import threading
from functools import partial
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import attnviz
from attnviz.models import sources, weights
from attnviz.errors import DownloadDisabledError, WeightsError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test touches the user's cache or models folder, and downloads start switched off."""
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(sources.ALLOW_ENV, raising=False)
    for var in ("SPACE_ID", "HF_HUB_OFFLINE", "HF_ENDPOINT", "ATTNVIZ_HF_REVISION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(weights, "MODELS_DIR", tmp_path / "models")
    (tmp_path / "models").mkdir()


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def random_state(model, seed=1):
    """A state dict in the model's layout with values unlike the model's own."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in model.state_dict().items()}


def assert_loaded(model, sd):
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items())


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- released layouts --------------------------------------------------------------------------
@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_timm_safetensors_layouts_load_strictly(tmp_path):
    """resnet50 (torchvision keys as re-hosted by timm), seresnet50 and sknet50 (timm keys)."""
    for name in ("resnet50", "seresnet50", "sknet50"):
        model = attnviz.create_model(name)
        sd = random_state(model)
        path = tmp_path / f"{name}.safetensors"
        save_file(sd, str(path), metadata={"format": "pt"})
        attnviz.load_weights(model, path)
        assert_loaded(model, sd)
        assert model.info.trained is True and model.info.weights_source == str(path)
        # timm files carry no class names: the zoo's ImageNet-1k names are kept, not replaced
        assert tuple(model.info.classes) == attnviz.imagenet_classes()


def test_cbam_authors_dataparallel_checkpoint_loads(tmp_path):
    model = attnviz.create_model("cbam_resnet50")
    sd = random_state(model)
    path = tmp_path / "RESNET50_CBAM_new_name_wrap.pth"
    torch.save({"epoch": 90, "arch": "resnet", "best_prec1": 77.3,
                "state_dict": {"module." + k: v for k, v in sd.items()},
                "optimizer": {"state": {}, "param_groups": []}}, path)
    attnviz.load_weights(model, path)
    assert_loaded(model, sd)
    assert model.info.trained


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
@pytest.mark.parametrize("name", ["scnet50", "scnet101", "sge_resnet50", "nl_resnet50"])
def test_plain_state_dict_layouts_load_strictly(tmp_path, name):
    model = attnviz.create_model(name)
    sd = random_state(model)
    path = tmp_path / f"{name}.pth"
    torch.save(sd, path)
    attnviz.load_weights(model, path)
    assert_loaded(model, sd)


def test_old_files_without_num_batches_tracked_load(tmp_path):
    """torchvision's original resnet50-19c8e357.pth predates the BN batch counters."""
    model = attnviz.create_model("resnet50")
    sd = {k: v for k, v in random_state(model).items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "resnet50-19c8e357.pth")
    attnviz.load_weights(model, tmp_path / "resnet50-19c8e357.pth")
    assert_loaded(model, sd)


def test_state_dict_and_model_wrappers_are_unwrapped(tmp_path):
    model = attnviz.create_model("lite_cbam")
    sd = random_state(model)
    dataparallel = {"module." + k: v for k, v in sd.items()}
    for i, wrapped in enumerate(({"model": sd}, {"state_dict": sd, "epoch": 3},
                                 {"model": {"state_dict": dataparallel}})):
        target = attnviz.create_model("lite_cbam")
        torch.save(wrapped, tmp_path / f"w{i}.pt")
        attnviz.load_weights(target, tmp_path / f"w{i}.pt")
        assert_loaded(target, sd)
    target = attnviz.create_model("lite_cbam")
    attnviz.load_weights(target, sd)  # a state dict in memory
    assert_loaded(target, sd)


# -- class names -------------------------------------------------------------------------------
def test_class_names_travel_with_the_weights(tmp_path):
    model = attnviz.create_model("lite_se")
    names = ["circle", "square", "triangle", "star", "cross", "ring"]
    save_file(random_state(model), str(tmp_path / "a.safetensors"),
              metadata={"classes": '["circle", "square", "triangle", "star", "cross", "ring"]'})
    attnviz.load_weights(model, tmp_path / "a.safetensors")
    assert model.info.classes == names
    other = attnviz.create_model("lite_se")
    torch.save({"state_dict": random_state(other), "classes": names[::-1]}, tmp_path / "b.pth")
    attnviz.load_weights(other, tmp_path / "b.pth")
    assert other.info.classes == names[::-1]


def test_class_names_of_the_wrong_length_are_ignored(tmp_path):
    model = attnviz.create_model("lite_se")
    torch.save({"state_dict": random_state(model), "classes": ["a", "b"]}, tmp_path / "c.pth")
    with pytest.warns(UserWarning, match="keeping class indices"):
        attnviz.load_weights(model, tmp_path / "c.pth")
    assert model.info.classes is None and model.info.trained


# -- bad files ---------------------------------------------------------------------------------
@pytest.fixture
def lite():
    model = attnviz.create_model("lite_cbam")
    return model, snapshot(model)


def refused(model, source, *patterns, **kwargs):
    with pytest.raises(WeightsError) as err:
        attnviz.load_weights(model, source, **kwargs)
    message = str(err.value)
    for p in patterns:
        assert p in message, message
    return message


def test_wrong_keys_are_listed_and_the_model_unchanged(tmp_path, lite):
    model, before = lite
    sd = random_state(model)
    sd["layer1.0.cbam.ChannelGate.mlp.0.weight"] = sd.pop("layer1.0.cbam.ChannelGate.mlp.1.weight")
    sd["extra.weight"] = torch.zeros(3)
    del sd["fc.bias"]
    torch.save(sd, tmp_path / "keys.pth")
    refused(model, tmp_path / "keys.pth", "missing 2 key(s)",
            "layer1.0.cbam.ChannelGate.mlp.1.weight", "fc.bias", "unexpected 2 key(s)",
            "extra.weight", "lite_cbam", "unchanged")
    assert_unchanged(model, before)
    assert model.info.trained is False


def test_wrong_shapes_are_listed_and_the_model_unchanged(tmp_path, lite):
    model, before = lite
    sd = random_state(model)
    sd["fc.weight"] = torch.zeros(10, sd["fc.weight"].shape[1])
    sd["fc.bias"] = torch.zeros(10)
    save_file(sd, str(tmp_path / "shapes.safetensors"))
    message = refused(model, tmp_path / "shapes.safetensors", "2 mis-shaped key(s)",
                      "fc.weight: checkpoint (10, 128) vs model (6, 128)")
    assert "missing" not in message
    assert_unchanged(model, before)
    # not strict: extra and missing keys are allowed, shapes still are not; nothing is copied
    refused(model, {k: v for k, v in sd.items() if k.startswith("fc.")}, "mis-shaped", strict=False)
    assert_unchanged(model, before)
    refused(model, {"foo": torch.zeros(1)}, "no key in common", strict=False)


def test_non_strict_loads_the_matching_part(lite):
    model, _ = lite
    sd = {k: v for k, v in random_state(model).items() if k.startswith("layer1.")}
    attnviz.load_weights(model, sd, strict=False)
    assert_loaded(model, sd)
    assert model.info.trained is False  # part of the model is still random


def test_pickle_that_would_run_code_is_refused(tmp_path, lite):
    model, before = lite
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    sd = random_state(model)
    sd["payload"] = Payload()
    torch.save({"state_dict": sd}, tmp_path / "evil.pth")
    torch.save({"state_dict": sd}, tmp_path / "evil_legacy.pth",
               _use_new_zipfile_serialization=False)
    for name in ("evil.pth", "evil_legacy.pth"):
        refused(model, tmp_path / name, "refuses", "weights_only", "os.makedirs")
    assert not marker.exists()
    assert_unchanged(model, before)


def test_truncated_files_are_refused(tmp_path, lite):
    model, before = lite
    sd = random_state(model)
    torch.save(sd, tmp_path / "full.pth")
    torch.save(sd, tmp_path / "full_legacy.pth", _use_new_zipfile_serialization=False)
    save_file(sd, str(tmp_path / "full.safetensors"))
    for name in ("full.pth", "full_legacy.pth", "full.safetensors"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) * 2 // 3])
        refused(model, cut, "truncated")
    (tmp_path / "cut.bin").write_bytes((tmp_path / "full.safetensors").read_bytes()[:5000])
    refused(model, tmp_path / "cut.bin", "truncated")  # sniffed as safetensors without a suffix
    assert_unchanged(model, before)


def test_text_empty_and_missing_files_are_refused(tmp_path, lite):
    model, before = lite
    (tmp_path / "weights.pth").write_text("<html><body>404 Not Found</body></html>\n")
    refused(model, tmp_path / "weights.pth", "text file")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    refused(model, tmp_path / "empty.safetensors", "empty")
    refused(model, tmp_path / "nowhere.pth", "not found")
    (tmp_path / "noise.bin").write_bytes(bytes(range(256)) * 4)
    refused(model, tmp_path / "noise.bin", "not a readable")
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "meta.pth")
    refused(model, tmp_path / "meta.pth", "no tensors")
    refused(model, 42, "path, an http(s) URL or a state dict")
    assert_unchanged(model, before)


def test_local_file_with_a_wrong_sha256_is_refused_and_kept(tmp_path, lite):
    model, before = lite
    path = tmp_path / "w.safetensors"
    save_file(random_state(model), str(path))
    refused(model, path, "sha256", sha256="0" * 64)
    assert path.exists()  # a user's own file is never deleted
    assert_unchanged(model, before)
    attnviz.load_weights(model, path, sha256=sha256(path)[:12])  # a prefix of >= 8 digits
    refused(attnviz.create_model("lite_cbam"), path, "hex digest", sha256="abc")


# -- downloads ---------------------------------------------------------------------------------
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Truncating(_Quiet):
    """Announces the whole file but sends only half of it."""

    def do_GET(self):
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over tmp_path/www; yields (base url, folder, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(_Quiet):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    handlers = {"": Handler, "/cut": _Truncating}
    servers = {}
    for prefix, cls in handlers.items():
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(cls, directory=str(root)))
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers[prefix] = httpd
    urls = {p: f"http://127.0.0.1:{s.server_address[1]}" for p, s in servers.items()}
    yield urls, root, requests
    for httpd in servers.values():
        httpd.shutdown()
        httpd.server_close()


def cache_files():
    folder = sources.cache_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_url_download_is_cached_and_checked(server, lite):
    urls, root, requests = server
    model, _ = lite
    sd = random_state(model)
    save_file(sd, str(root / "lite_cbam.safetensors"))
    url = urls[""] + "/lite_cbam.safetensors"
    digest = sha256(root / "lite_cbam.safetensors")
    attnviz.load_weights(model, url, sha256=digest)
    assert_loaded(model, sd)
    assert model.info.trained and model.info.weights_source == url
    (cached,) = cache_files()
    assert cached.endswith("-lite_cbam.safetensors") and len(requests) == 1
    other = attnviz.create_model("lite_cbam")
    attnviz.load_weights(other, url, sha256=digest)  # from the cache, no new request
    assert_loaded(other, sd)
    assert len(requests) == 1
    (sources.cache_dir() / cached).write_bytes(b"damaged")  # a damaged cache is fetched again
    attnviz.load_weights(attnviz.create_model("lite_cbam"), url, sha256=digest)
    assert len(requests) == 2 and sha256(sources.cache_dir() / cached) == digest


def test_bad_checksum_is_refused_and_the_download_removed(server, lite):
    urls, root, _ = server
    model, before = lite
    save_file(random_state(model), str(root / "w.safetensors"))
    refused(model, urls[""] + "/w.safetensors", "sha256", "expected", "removed", sha256="ab" * 32)
    assert cache_files() == []  # neither the file nor a partial download is left
    assert_unchanged(model, before)


def test_failed_downloads_are_clear_errors(server, lite):
    urls, root, _ = server
    model, before = lite
    refused(model, urls[""] + "/missing.safetensors", "404")
    save_file(random_state(model), str(root / "big.safetensors"))
    message = refused(model, urls["/cut"] + "/big.safetensors")
    assert "stopped after" in message or "Could not download" in message
    assert cache_files() == []
    refused(model, f"http://127.0.0.1:{free_port()}/w.safetensors", "Could not download")
    assert_unchanged(model, before)


def free_port():
    """A loopback port with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- pretrained --------------------------------------------------------------------------------
def test_pretrained_offline_says_how_to_supply_the_file():
    with pytest.raises(DownloadDisabledError) as err:
        attnviz.create_model("seresnet50", pretrained=True)
    message = str(err.value)
    src = sources.get_source("seresnet50")
    for part in (src.url, str(weights.MODELS_DIR / "seresnet50.safetensors"),
                 "attnviz.load_weights(model, path)", "ATTNVIZ_ALLOW_DOWNLOAD=1"):
        assert part in message, message
    assert cache_files() == []


def test_pretrained_without_a_public_source_is_a_clear_error():
    with pytest.raises(WeightsError) as err:
        attnviz.create_model("cbam_resnet50", pretrained=True)
    assert not isinstance(err.value, DownloadDisabledError)
    assert "cbam_resnet50.safetensors" in str(err.value) and "load_weights" in str(err.value)


def test_pretrained_finds_a_file_in_the_models_folder():
    model = attnviz.create_model("lite_sge")
    sd = random_state(model)
    save_file(sd, str(weights.MODELS_DIR / "lite_sge.safetensors"),
              metadata={"classes": '["a", "b", "c", "d", "e", "f"]'})
    (weights.MODELS_DIR / "lite_sge.json").write_text('{"val_accuracy": 0.9}')
    loaded = attnviz.create_model("lite_sge", pretrained=True)
    assert_loaded(loaded, sd)
    assert loaded.info.trained and loaded.info.card["val_accuracy"] == 0.9
    assert loaded.info.classes == list("abcdef") and not loaded.training


def test_pretrained_downloads_when_allowed(server, monkeypatch):
    urls, root, requests = server
    sd = random_state(attnviz.create_model("lite_se"))
    save_file(sd, str(root / "lite_se.safetensors"))
    src = sources.WeightSource(model="lite_se", url=urls[""] + "/lite_se.safetensors",
                               filename="lite_se.test.safetensors", origin="a test server",
                               tag="lite_se.test", license="none",
                               sha256=sha256(root / "lite_se.safetensors"), crop_pct=0.8)
    monkeypatch.setitem(sources.SOURCES, "lite_se", src)
    with pytest.raises(DownloadDisabledError):
        attnviz.create_model("lite_se", pretrained=True)
    assert requests == []
    monkeypatch.setenv(sources.ALLOW_ENV, "1")
    model = attnviz.create_model("lite_se", pretrained=True)
    assert_loaded(model, sd)
    assert model.info.trained and src.url in model.info.weights_source
    assert model.info.card["source"] == src.url and model.info.resize == 280
    assert cache_files() == ["lite_se.test.safetensors"]
    monkeypatch.delenv(sources.ALLOW_ENV)  # once cached, it loads offline
    assert_loaded(attnviz.create_model("lite_se", pretrained=True), sd)
    assert len(requests) == 1


def test_known_sources_table():
    imagenet = set(attnviz.list_models("imagenet"))
    assert set(sources.SOURCES) | set(sources.NO_DIRECT_SOURCE) == imagenet
    assert not set(sources.SOURCES) & set(sources.NO_DIRECT_SOURCE)
    assert set(sources.SOURCES) == {"resnet50", "seresnet50", "sknet50", "scnet50", "scnet101"}
    for name, src in sources.SOURCES.items():
        assert src.model == name and src.url.startswith("https://") and src.filename
        assert src.sha256 is None or re.fullmatch("[0-9a-f]{8,64}", src.sha256)
        assert src.resize == 256 and src.input_size == 224
    assert sources.SOURCES["resnet50"].url == (
        "https://huggingface.co/timm/resnet50.tv_in1k/resolve/main/model.safetensors")


def test_untrained_models_say_so():
    for name in ("lite_cbam", "resnet50", "danet_resnet50"):
        info = attnviz.create_model(name).info
        assert info.trained is False and "random" in info.weights_source
