"""Dataset-level attention statistics, drawn as the papers draw them (see the functions below)."""
from __future__ import annotations

import numpy as np

Z95 = 1.959964  # two-sided 95% normal quantile


def mean_interval(values) -> dict:
    """Mean of the finite ``values`` with a 95% normal interval (mean +- 1.96 standard errors);
    ``n`` counts the values used."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = float(v.mean())
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return {"mean": round(m, 4), "lo": round(m - Z95 * se, 4), "hi": round(m + Z95 * se, 4),
            "n": int(len(v))}
