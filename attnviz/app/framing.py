"""What the app says about a model's weights and what its prediction can mean: the weights badge
(with the measured accuracy, a warning below :data:`ACCURACY_WARN`) and the line that frames a
prediction (a lite model knows only the six synthetic shapes; random weights make the label
meaningless).

    badge_pill(loaded)                   # "<span class='av-badge ...'>✓ trained on shapes ·
    99.9%</span>"
    prediction_note(loaded, example)     # "" or a sentence saying how to read the label
"""
from __future__ import annotations

ACCURACY_WARN = 0.8  # a model below this validation accuracy gets a warning badge


def accuracy(loaded) -> float | None:
    """The model's measured validation accuracy (its card), or None."""
    card = getattr(loaded.model.info, "card", None) or {}
    for key in ("val_accuracy", "accuracy", "top1"):
        v = card.get(key)
        if v is not None:
            try:
                v = float(v)
            except (TypeError, ValueError):
                continue
            return v / 100 if v > 1 else v
    return None


def badge_pill(loaded) -> str:
    """The weights badge: red-amber for random weights, amber for a weak model (accuracy below
    ACCURACY_WARN), green otherwise; the accuracy inside when it was measured."""
    if not loaded.trained:
        why = " (no checkpoint yet)" if loaded.entry.family == "lite" else ""
        return f"<span class='av-badge av-random'>⚠ random weights{why}</span>"
    if loaded.entry.family == "external":
        return own_model_pill(loaded.entry)
    acc = accuracy(loaded)
    if acc is None:
        return f"<span class='av-badge av-trained'>✓ {loaded.badge}</span>"
    if acc < ACCURACY_WARN:
        return (f"<span class='av-badge av-weak' title='validation accuracy below "
                f"{ACCURACY_WARN:.0%}'>⚠ {loaded.badge} · only {acc:.1%} val. accuracy</span>")
    return (f"<span class='av-badge av-trained'>✓ {loaded.badge} · {acc:.1%} val. "
            "accuracy</span>")


def entry_badge_md(entry) -> str:
    """The badge of a catalogue entry before its model is built (a model just selected): what
    the catalogue knows about its weights. The analysis replaces it with :func:`badge_md`."""
    if not entry.trained:
        why = " (no checkpoint yet)" if entry.family == "lite" else ""
        return (f"<span class='av-badge av-random'>⚠ random weights{why}</span> `{entry.name}` "
                "is untrained: its maps show an untrained network, not learned attention.")
    if entry.family == "external":
        return own_model_pill(entry)
    return f"<span class='av-badge av-trained'>✓ {entry.badge}</span>"


def own_model_pill(entry) -> str:
    """A model served with ``--model``: where its weights came from, not a ✓ (attnviz cannot
    know whether the file's code loaded trained weights)."""
    if entry.path is not None:
        src = f"weights from <code>--weights {entry.path.name}</code>"
    else:
        src = "weights as the file's own code sets them (attnviz cannot tell if trained)"
    return f"<span class='av-badge av-own'>your model · {src}</span>"


def badge_md(loaded) -> str:
    """The badge with a sentence when the weights call for one."""
    pill = badge_pill(loaded)
    if not loaded.trained:
        return (f"{pill} `{loaded.name}` is untrained: its maps show an untrained network, not "
                "learned attention.")
    acc = accuracy(loaded)
    if acc is not None and acc < ACCURACY_WARN:
        return (f"{pill} a weakly trained model: its maps may not show what a good model "
                "attends to.")
    return pill


def prediction_note(loaded, example: str | None) -> str:
    """How to read the predicted label; "" when it needs no words (a trained ImageNet model, or a
    lite model on one of the synthetic examples)."""
    classes = list(getattr(loaded.model.info, "classes", None) or [])
    if not loaded.trained:
        return ("<span class='av-frame av-frame-warn'>⚠ <b>Random weights: the predicted label "
                "is meaningless</b> (an untrained network's output).</span>")
    if loaded.entry.family == "lite" and example is None:
        names = ", ".join(classes) if classes else "six synthetic shapes"
        return (f"<span class='av-frame'><b>Note:</b> <b>{loaded.name} knows only "
                f"{len(classes) or 'six'} "
                f"synthetic shapes</b> ({names}): on any other picture its label is the nearest "
                "shape, not what the picture shows.</span>")
    if loaded.entry.family == "user" and example is None and classes:
        return (f"<span class='av-frame'><b>Note:</b> <b>{loaded.name} knows only its "
                f"{len(classes)} "
                f"training classes</b> ({', '.join(classes[:12])}"
                f"{', …' if len(classes) > 12 else ''}).</span>")
    return ""
