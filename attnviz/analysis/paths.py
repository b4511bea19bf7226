"""Many image files analysed in batched passes (the CLI's ``attnviz inspect FOLDER``); under
``torchrun`` each process takes its share (:mod:`attnviz.data.shard`)."""
from __future__ import annotations

from ..data.batch import DEFAULT_BATCH, chunks
from ..data.images import load_image
from ..data.shard import current
from ..errors import ImageError, InspectError
from .inspect import inspect, load_mask


def inspect_paths(model, paths, batch_size: int = DEFAULT_BATCH, shard=None, on_result=None,
                  masks=None, **inspect_kw) -> list[dict]:
    """Inspect many image files in batched passes; under ``torchrun`` each process takes its
    share (:mod:`attnviz.data.shard`).

    ``on_result(path, analysis)`` is called for each of this process's images (to write its
    overlays, say). ``masks``: {path: mask file or array} of ground-truth masks the size of
    their images (an image whose mask does not fit is reported, not analysed). Returns every
    image's summary, ``{"path", **Analysis.to_dict()}`` or
    ``{"path", "error"}`` for a file that cannot be read, in the order of ``paths``, gathered
    from every process (so each process returns the same list)."""
    shard = shard or current()
    paths = [str(p) for p in paths]
    mine = shard.take(list(range(len(paths))))
    rows = []
    for part in chunks(len(mine), batch_size):
        idx = mine[part]
        good, pils, gts = [], [], []
        for i in idx:
            try:
                pil = load_image(paths[i])
                mask = (masks or {}).get(paths[i])
                gts.append(None if mask is None else
                           load_mask(mask, (pil.height, pil.width), exact=True))
                pils.append(pil)
                good.append(i)
            except (ImageError, InspectError) as e:
                rows.append({"index": i, "path": paths[i], "error": str(e)})
        if not pils:
            continue
        kw = dict(inspect_kw, mask=gts) if masks else inspect_kw
        for i, a in zip(good, inspect(model, pils, batch_size=batch_size, **kw)):
            if on_result is not None:
                on_result(paths[i], a)
            rows.append({"index": i, "path": paths[i], **a.to_dict()})
    rows = sorted(shard.gather(rows), key=lambda r: r["index"])
    for r in rows:
        r.pop("index")
    return rows
