"""Short, distinct labels for attention modules under any naming, and the stage a module is in.

Module paths come from whatever the network's author named things: torchvision
(``layer3.1.se``), timm (``stages.2.blocks.1.attn``), a flat ``nn.Sequential``
(``features.7.se``) or a wrapper around any of them (``backbone.body.layer1.0.se``). A label must
tell the modules of one group (e.g. every "CBAM spatial" map) apart without repeating what the
group's name already says:

1. the trailing names every path of the group shares (``cbam.SpatialGate``, ``attn``) are
   dropped -- the group's name says them -- up to a block index, which is kept; a group of one
   drops only its own attribute name;
2. of what is left, the shortest suffix that no other path of the group ends with is kept,
   extended to start at a name rather than at a bare index (``features.7``, never ``7``).

    module_labels(["stages.0.blocks.0.attn", "stages.0.blocks.1.attn", "stages.1.blocks.0.attn"])
    # {"stages.0.blocks.0.attn": "stages.0.blocks.0", ... }
    module_labels(["layer1.0.se", "layer1.1.se", "layer2.0.se"])
    # {"layer1.0.se": "layer1.0", "layer1.1.se": "layer1.1", "layer2.0.se": "layer2.0"}

Stages (:func:`stage_keys`): the shortest path prefix that is not the same for every module
(``layer3`` for torchvision, ``stages.2`` for timm, ``features.7`` for a flat Sequential),
ordered by where it first runs in the forward pass.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["group_labels", "module_labels", "record_labels", "record_stages", "stage_keys"]


def _is_index(part: str) -> bool:
    return part.isdigit()


def _unique_suffixes(parts: list[tuple[str, ...]]) -> list[str]:
    """The shortest suffix of each that no other ends with, starting at a name, not an index."""
    out = []
    for i, p in enumerate(parts):
        others = [q for j, q in enumerate(parts) if j != i and q != p]
        k = 1
        while k < len(p) and any(len(q) >= k and q[-k:] == p[-k:] for q in others):
            k += 1
        while k < len(p) and _is_index(p[-k]):
            k += 1
        out.append(".".join(p[-k:]))
    return out


def _common_tail(parts: list[tuple[str, ...]]) -> int:
    """How many trailing parts can be dropped from every path, keeping each non-empty and the
    paths distinct."""
    if len(parts) == 1:
        return 1 if len(parts[0]) > 1 and not _is_index(parts[0][-1]) else 0
    n = 0
    shortest = min(len(p) for p in parts)
    while (n + 1 < shortest and len({p[-(n + 1)] for p in parts}) == 1
           and not _is_index(parts[0][-(n + 1)])):  # an index says which block: kept
        cut = {p[:-(n + 1)] for p in parts}
        if len(cut) < len(set(parts)):
            break
        n += 1
    return n


def module_labels(paths: Iterable[str]) -> dict[str, str]:
    """{path: label} for module paths of one group (see the module docstring); distinct paths
    get distinct labels."""
    uniq = list(dict.fromkeys(str(p) for p in paths))
    if not uniq:
        return {}
    parts = [tuple(p.split(".")) for p in uniq]
    n = _common_tail(parts)
    cut = [p[:len(p) - n] if n else p for p in parts]
    return dict(zip(uniq, _unique_suffixes(cut)))


def group_labels(items: Sequence[tuple[object, str, object]]) -> dict:
    """{key: label} for ``(key, path, group)`` items: labels made within each group (e.g. one per
    block and kind, whose name the caller shows beside the label)."""
    groups: dict[object, list[tuple[object, str]]] = {}
    for key, path, group in items:
        groups.setdefault(group, []).append((key, path))
    out = {}
    for members in groups.values():
        labels = module_labels(path for _, path in members)
        for key, path in members:
            out[key] = labels[path]
    return out


def record_labels(records) -> dict[str, str]:
    """{tap: label} for capture records, labelled within each (block, kind) group. Two taps of
    one module and kind (rare) are told apart by their tap names."""
    items, seen = [], {}
    for r in records:
        seen.setdefault((r.block, r.kind, r.layer), []).append(r.tap)
    for r in records:
        path = r.tap if len(seen[(r.block, r.kind, r.layer)]) > 1 else r.layer
        items.append((r.tap, path, (r.block, r.kind)))
    return group_labels(items)


def stage_keys(paths: Iterable[str]) -> dict[str, tuple[int, str]]:
    """{path: (stage index, stage name)}: the stage is the shortest prefix of path parts that
    differs between the paths; index 0 is the stage that runs first (``paths`` in forward
    order), the last index the deepest."""
    uniq = list(dict.fromkeys(str(p) for p in paths))
    parts = [tuple(p.split(".")) for p in uniq]
    depth = 1
    longest = max((len(p) for p in parts), default=1)
    while depth < longest and len({p[:depth] for p in parts}) == 1:
        depth += 1
    order: dict[tuple, int] = {}
    out = {}
    for path, p in zip(uniq, parts):
        key = p[:depth]
        order.setdefault(key, len(order))
        out[path] = (order[key], ".".join(key))
    return out


def record_stages(records) -> dict[str, int]:
    """{tap: stage index} of capture records (in forward order); higher is deeper."""
    keys = stage_keys(r.layer for r in records)
    return {r.tap: keys[r.layer][0] for r in records}
