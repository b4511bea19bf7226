"""Where ImageNet weights come from: a table of known public sources. Hugging Face-hosted ones
are fetched with ``huggingface_hub`` (:mod:`attnviz.models.hub`: its cache, offline mode,
revision pinning, resumable downloads); the others with a small downloader that caches files
under ``$ATTNVIZ_CACHE`` (default ``~/.cache/attnviz``). Both check the sha256 where known.

``create_model(name, pretrained=True)`` downloads only when allowed: ``ATTNVIZ_ALLOW_DOWNLOAD=1``
(the Dockerfile sets it), or on a Hugging Face Space (``SPACE_ID`` set) unless
``ATTNVIZ_ALLOW_DOWNLOAD=0``; otherwise it raises :class:`~attnviz.errors.DownloadDisabledError`
saying how to supply the file. An explicit URL given to ``attnviz.load_weights(model, url)`` is
downloaded whatever the switch says: the caller asked for it.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsError
from .info import IMAGENET_MEAN, IMAGENET_STD
from . import hub

ALLOW_ENV = "ATTNVIZ_ALLOW_DOWNLOAD"
CACHE_ENV = "ATTNVIZ_CACHE"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightSource:
    """One public checkpoint for an attnviz model (its keys are in the model's layout).

    sha256: the full hex digest, or a prefix of at least 8 hex digits (the torch.hub file-name
    convention, where the authors published only that); None where unknown.
    """

    model: str
    url: str
    filename: str  # name in the cache
    origin: str  # who trained and published it
    tag: str  # their name for it
    license: str
    sha256: str | None = None
    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    classes: tuple | None = None  # none of these files carries class names: indices are kept
    hf_repo: str | None = None  # on the Hugging Face Hub: fetched with huggingface_hub
    hf_file: str | None = None
    revision: str = "main"  # a branch, tag or commit hash (ATTNVIZ_HF_REVISION overrides)

    @property
    def resize(self) -> int:
        """Short side before the centre crop."""
        return int(round(self.input_size / self.crop_pct))

    @property
    def label(self) -> str:
        return f"{self.tag} from {self.origin}"


def _timm(model, tag, interpolation="bicubic", license="apache-2.0"):
    return WeightSource(
        model=model, url=f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors",
        filename=f"{tag}.safetensors", origin="timm (Hugging Face Hub)", tag=tag, license=license,
        interpolation=interpolation, hf_repo=f"timm/{tag}", hf_file="model.safetensors")


def _scnet(model, file, digest_prefix):
    return WeightSource(
        model=model, url=f"https://backseason.oss-cn-beijing.aliyuncs.com/scnet/{file}",
        filename=file, origin="SCNet authors (MCG-NKU/SCNet)", tag=model,
        license="see github.com/MCG-NKU/SCNet", sha256=digest_prefix)


SOURCES: dict[str, WeightSource] = {
    # timm re-hosts torchvision's original ResNet-50 weights (resnet50-19c8e357.pth)
    "resnet50": _timm("resnet50", "resnet50.tv_in1k", "bilinear", "bsd-3-clause"),
    # trained at 224 with the standard 0.875 crop (the a1/a2 tags use a 0.95 crop)
    "seresnet50": _timm("seresnet50", "seresnet50.ra2_in1k"),
    "sknet50": _timm("sknet50", "skresnext50_32x4d.ra_in1k"),
    "scnet50": _scnet("scnet50", "scnet50-dc6a7e87.pth", "dc6a7e87"),
    "scnet101": _scnet("scnet101", "scnet101-44c5b751.pth", "44c5b751"),
}

# ImageNet configurations without a direct public download, and what a user can do instead.
NO_DIRECT_SOURCE: dict[str, str] = {
    "cbam_resnet50": "The CBAM authors (github.com/Jongchan/attention-module) share their "
                     "checkpoint through a file-hosting link, not a direct URL.",
    "sge_resnet50": "The SGE authors (github.com/implus/PytorchInsight) share their checkpoint "
                    "through file-hosting links, not a direct URL.",
    "nl_resnet50": "No ImageNet checkpoint in this layout is published.",
    "danet_resnet50": "DANet was published for segmentation; no ImageNet classifier exists.",
    "sagan_resnet50": "No ImageNet classifier with SAGAN self-attention is published.",
}


def get_source(name: str) -> WeightSource | None:
    return SOURCES.get(name)


def downloads_allowed() -> bool:
    """``ATTNVIZ_ALLOW_DOWNLOAD`` when set; else on a Hugging Face Space (``SPACE_ID``) yes:
    a Space has the network and no other way to get the known public weights."""
    value = os.environ.get(ALLOW_ENV, "").strip().lower()
    if value:
        return value in {"1", "true", "yes", "on"}
    return bool(os.environ.get("SPACE_ID", "").strip())


def revision(src: WeightSource) -> str:
    return os.environ.get("ATTNVIZ_HF_REVISION", "").strip() or src.revision


def source_url(src: WeightSource) -> str:
    """Where the source's file is fetched from (the Hub address honours HF_ENDPOINT)."""
    if src.hf_repo:
        return hub.hub_url(src.hf_repo, src.hf_file, revision(src))
    return src.url


def cached_source(src: WeightSource) -> Path | None:
    """The source's file already on this machine (Hub cache or attnviz's cache), or None."""
    if src.hf_repo:
        return hub.cached(src.hf_repo, src.hf_file, revision(src))
    path = cache_dir() / src.filename
    return path if path.is_file() else None


def fetch_source(src: WeightSource) -> Path:
    """The source's file, downloaded when not cached (the caller checks downloads_allowed)."""
    if src.hf_repo:
        return hub.fetch(src.hf_repo, src.hf_file, revision(src), src.sha256)
    return download(src.url, src.sha256, src.filename)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "attnviz").expanduser()


def is_url(source) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def cache_name(url: str) -> str:
    """A cache file name for an arbitrary URL: a short hash of the URL and its last part."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{base or 'weights'}"


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_expected(expected: str) -> str:
    expected = expected.strip().lower()
    if len(expected) < 8 or not re.fullmatch(r"[0-9a-f]+", expected) or len(expected) > 64:
        raise WeightsError(f"sha256 {expected!r} is not a hex digest (or a prefix of at least 8 "
                           "hex digits).")
    return expected


def digest_matches(digest: str, expected: str) -> bool:
    return digest.startswith(_check_expected(expected))


def verify_sha256(path, expected: str | None) -> None:
    """Raise WeightsError if ``path``'s sha256 does not match ``expected`` (None: no check)."""
    if expected is None:
        return
    digest = sha256_of(path)
    if not digest_matches(digest, expected):
        raise WeightsError(f"{Path(path).name}: sha256 is {digest}, expected {expected}. "
                           "The file is damaged or not the one expected.")


def download(url: str, sha256: str | None = None, filename: str | None = None,
             timeout: float = 60.0) -> Path:
    """Return the cached copy of ``url``, downloading it first if needed.

    The file is written under a temporary name and moved into the cache only when complete and,
    where ``sha256`` is known, matching; a bad checksum is refused and the download removed. A
    cached copy that no longer matches is removed and fetched again.
    """
    if not is_url(url):
        raise WeightsError(f"Not an http(s) URL: {url!r}")
    if sha256 is not None:
        _check_expected(sha256)
    dest = cache_dir() / (filename or cache_name(url))
    if dest.is_file():
        if sha256 is None or digest_matches(sha256_of(dest), sha256):
            return dest
        dest.unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(url, out, timeout)
        if sha256 is not None and not digest_matches(digest, sha256):
            raise WeightsError(f"Downloaded {url} but its sha256 is {digest}, expected {sha256}. "
                               "The file was removed; the source may have changed or the "
                               "download was corrupted.")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _fetch(url: str, out, timeout: float) -> str:
    """Stream ``url`` into the open file ``out``; return the sha256 of what was written."""
    request = urllib.request.Request(url, headers={"User-Agent": "attnviz"})
    h = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as e:
        raise WeightsError(f"Could not download {url}: the server answered {e.code} "
                           f"{e.reason}.") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise WeightsError(f"Could not download {url}: {reason}. Check the network, or download "
                           "the file yourself and pass its path.") from None
    if expected is not None and expected.isdigit() and received != int(expected):
        raise WeightsError(f"Download of {url} stopped after {received} of {expected} bytes; "
                           "try again.")
    return h.hexdigest()
