"""Weights hosted on the Hugging Face Hub, fetched with ``huggingface_hub``.

``hf_hub_download`` gives what a hand-written downloader does not: the Hub's shared cache
(``HF_HUB_CACHE``, files timm and transformers already fetched are reused), offline mode
(``HF_HUB_OFFLINE=1``: the cached copy or a clear error, no network), revision pinning (a branch,
tag or commit hash) and resumable downloads (an interrupted ``.incomplete`` file is continued).
On top of it attnviz keeps its own check: where the sha256 of a file is known, a cached or
downloaded copy that does not match is refused and removed.

``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` are read at each call (``huggingface_hub`` reads them
once, at import), so a server started with them set, or a test, gets what it asked for.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import WeightsError

__all__ = ["cached", "fetch", "hub_url", "offline"]

HUB = "https://huggingface.co"
_CHUNK = 1 << 20


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HUB).rstrip("/")


def offline() -> bool:
    return (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
            or "").strip().lower() in {"1", "true", "yes", "on"}


def hub_url(repo: str, filename: str, revision: str = "main") -> str:
    """The file's address on the Hub (for messages and model cards)."""
    return f"{endpoint()}/{repo}/resolve/{revision}/{filename}"


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check(path: Path, sha256: str | None, what: str) -> Path:
    if sha256 is None:
        return path
    digest = _sha256(path)
    if not digest.startswith(sha256.strip().lower()):
        real = path.resolve()
        path.unlink(missing_ok=True)  # the snapshot's link, then the blob it pointed to
        real.unlink(missing_ok=True)
        raise WeightsError(f"{what}: sha256 is {digest}, expected {sha256}. The file was "
                           "removed from the Hub cache; the repository may have changed (pin a "
                           "revision) or the download was corrupted.")
    return path


def cached(repo: str, filename: str, revision: str = "main", cache_dir=None) -> Path | None:
    """The Hub cache's copy of the file at ``revision``, or None (no network)."""
    from huggingface_hub import (
        try_to_load_from_cache,  # deferred: only weights need the hub
    )
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    hit = try_to_load_from_cache(repo, filename, revision=revision, cache_dir=cache_dir)
    return Path(hit) if isinstance(hit, str) else None


def fetch(repo: str, filename: str, revision: str = "main", sha256: str | None = None,
          cache_dir=None, timeout: float = 60.0) -> Path:
    """The file ``repo/filename`` at ``revision`` from the Hub cache, downloading it (resuming an
    interrupted download) when it is not there and the hub is not offline; its sha256 checked
    where known. Errors are WeightsErrors that say what to do."""
    from huggingface_hub import hf_hub_download  # deferred: only weights need the hub
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    what = f"{repo}/{filename}@{revision}"
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None  # read now, not at import
    try:
        path = hf_hub_download(repo, filename, revision=revision, cache_dir=cache_dir,
                               endpoint=endpoint(), local_files_only=offline(),
                               etag_timeout=timeout, library_name="attnviz")
    except LocalEntryNotFoundError:
        if offline():
            raise WeightsError(f"{what} is not in the Hugging Face cache and HF_HUB_OFFLINE is "
                               "set: fetch it once online, or unset HF_HUB_OFFLINE.") from None
        raise WeightsError(f"Could not reach the Hugging Face Hub ({endpoint()}) for {what}, "
                           "and no copy is cached. Check the network, or download the file "
                           "yourself and pass its path.") from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise WeightsError(f"{what} is not on the Hugging Face Hub ({type(e).__name__}); the "
                           "repository, revision or file name is wrong.") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise WeightsError(f"Could not download {what} from the Hugging Face Hub: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}. Try "
                           "again (the download resumes), or pass a local file.") from None
    return _check(Path(path), sha256, what)
