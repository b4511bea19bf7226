"""Where the app keeps what it writes: trained runs and the models folder; the names users may
give."""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,39}$")


def runs_dir() -> Path:
    return Path(os.environ.get("ATTNVIZ_RUNS_DIR") or ROOT / "runs")


def models_dir() -> Path:
    from ..models.weights import MODELS_DIR
    return Path(MODELS_DIR)
