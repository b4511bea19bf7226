"""Models trained in the app: names, owners, room, and how a finished training is published.

    name = check_name("My_CBAM")          # refused: a shipped or trained name in any case
    check_room()                          # refused: the count or disk limit is reached
    with staging() as tmp:                # train into a hidden folder inside runs/
        card = train(..., out_dir=tmp)
        publish(tmp, name)                # card then checkpoint moved into runs/, owner set

A model trained here is visible only to the session that trained it (its card's ``owner`` is a
hash of the session id) unless the server runs with ``ATTNVIZ_SHARE_TRAINED=1``; outside a
request (the page as built at start) only shared models are listed. Class names come from
users' folder names: they are limited to plain characters when a model is trained, and a card
with other characters (written before this check) is shown escaped.
"""
from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import AttnvizError
from . import limits
from .leftovers import owned_prefix

CLASS_NAME_RE = re.compile(r"^[\w][\w .,()+'-]{0,63}$")


ROOT = Path(__file__).resolve().parents[2]
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,39}$")


def runs_dir() -> Path:
    """Where models trained here live: ``$ATTNVIZ_RUNS_DIR``, else ``runs/``."""
    return Path(os.environ.get("ATTNVIZ_RUNS_DIR") or ROOT / "runs")


def models_dir() -> Path:
    """Where the shipped checkpoints live."""
    from ..models.weights import MODELS_DIR
    return Path(MODELS_DIR)


# ------------------------------------------------------------------------------ owners
def session_owner() -> str | None:
    """A hash of the current request's session id, or None outside a request."""
    try:
        from gradio.context import LocalContext
        req = LocalContext.request.get(None)
    except Exception:  # noqa: BLE001 - outside Gradio
        return None
    sid = getattr(req, "session_hash", None) if req is not None else None
    return hashlib.sha256(str(sid).encode()).hexdigest()[:16] if sid else None


def visible(card: dict) -> bool:
    """Whether the current request may see a model with this card."""
    owner = card.get("owner")
    if not owner or limits.SHARE_TRAINED:
        return True
    return session_owner() == owner  # outside a request (the page built at start): hidden


# ------------------------------------------------------------------------------ names
def _taken() -> dict[str, str]:
    """{lower-case name: name} of every shipped and trained model (any owner)."""
    from ..models.zoo import REGISTRY
    names = {n.lower(): n for n in REGISTRY}
    for folder in (models_dir(), runs_dir()):
        if folder.is_dir():
            names.update({p.stem.lower(): p.stem for p in folder.glob("*.safetensors")})
    return names


def check_name(name) -> str:
    """The name a new model may take; AttnvizError with what to do otherwise. Names compare
    case-insensitively (``Lite_CBAM`` is taken by ``lite_cbam``)."""
    name = (name if isinstance(name, str) else "").strip()
    if not NAME_RE.match(name):
        raise AttnvizError("Name the model with a letter followed by letters, digits, '_' or "
                           "'-' (at most 40 characters), e.g. my_cbam.")
    other = _taken().get(name.lower())
    if other is not None:
        from ..models.zoo import REGISTRY
        shipped = other in REGISTRY or (models_dir() / f"{other}.safetensors").exists()
        what = "a shipped model" if shipped else "a model already trained here"
        raise AttnvizError(f"{name!r} is taken by {what} ({other!r}; names are compared "
                           "ignoring case); choose another name.")
    return name


def check_classes(classes) -> None:
    """Class (folder) names must be plain text: letters, digits, spaces and . , ( ) + ' - _."""
    bad = [c for c in classes if not CLASS_NAME_RE.match(str(c))]
    if bad:
        shown = ", ".join(limits.echo(str(c), 40) for c in bad[:3])
        raise AttnvizError(f"class folder names may hold letters, digits, spaces and . , ( ) + "
                           f"' - _ (at most 64 characters); rename {shown} and upload again.")


def escape(text) -> str:
    """``text`` safe to put into Markdown/HTML (markup characters as entities)."""
    return html.escape(str(text), quote=False).replace("`", "&#96;").replace("*", "&#42;")


# ------------------------------------------------------------------------------ room
def usage() -> tuple[int, float]:
    """(models trained here, MB they use on disk)."""
    d = runs_dir()
    if not d.is_dir():
        return 0, 0.0
    files = list(d.glob("*.safetensors"))
    mb = sum(p.stat().st_size + _size(p.with_suffix(".json")) for p in files) / 2**20
    return len(files), mb


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def check_room() -> None:
    n, mb = usage()
    if n >= limits.USER_MODELS_MAX or mb >= limits.USER_MODELS_MAX_MB:
        raise AttnvizError(f"This server holds {n} models trained here ({mb:.0f} MB); the limit "
                           f"is {limits.USER_MODELS_MAX} models and "
                           f"{limits.USER_MODELS_MAX_MB:.0f} MB. No more can be trained until "
                           "the operator removes some from runs/.")


# ------------------------------------------------------------------------------ publishing
@contextlib.contextmanager
def staging():
    """A hidden folder inside runs/ to train into; removed when the block ends (published files
    have been moved out by then)."""
    d = runs_dir()
    d.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=owned_prefix(STAGING_PREFIX), dir=d))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


STAGING_PREFIX = ".training-"


def remove_orphans() -> int:
    """At start: staging folders of trainings whose server is gone (crashed, killed)."""
    from .leftovers import remove_orphans
    return remove_orphans(runs_dir(), STAGING_PREFIX)


def publish(tmp: Path, name: str) -> Path:
    """Move ``name``'s card and checkpoint from ``tmp`` into runs/ (the card first: the model
    appears in lists when its checkpoint does), recording the owner unless models are shared."""
    card_path = tmp / f"{name}.json"
    card = json.loads(card_path.read_text())
    owner = None if limits.SHARE_TRAINED else session_owner()
    if owner:
        card["owner"] = owner
        card_path.write_text(json.dumps(card, indent=2))
    d = runs_dir()
    if (d / f"{name}.safetensors").exists():
        raise AttnvizError(f"a model named {name!r} appeared while this one trained; it was not "
                           "saved. Train again under another name.")
    os.replace(card_path, d / card_path.name)
    os.replace(tmp / f"{name}.safetensors", d / f"{name}.safetensors")
    return d / f"{name}.safetensors"
