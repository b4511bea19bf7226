"""One Captum attribution object per (model, method, layer), built once and reused
(:class:`Explainer`, cached by :func:`get_explainer`), and the per-model lock every attribution
holds (:func:`model_lock`).

Cost. Grad-CAM needs the gradient at its layer only, so the forward pass runs without autograd
up to that layer and with it from there on (the same numbers; no graph is built, and no tensor
kept, for the part of the network the gradient never reaches). Only methods that draw random
numbers (smoothgrad, gradient_shap, a "noise" baseline) fork and seed the generators.

Thread safety: Captum's layer methods register hooks on the model and keep per-device state
during ``attribute()``, so two threads attributing on one model clobber each other. Every
attribution holds :func:`model_lock` (one re-entrant lock per model). The model's train/eval
state is never changed and no hook survives a call.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
import warnings
import weakref

import numpy as np
import torch
from captum.attr import (GradientShap, GuidedGradCam, IntegratedGradients, LayerGradCam,
                         NoiseTunnel, Occlusion, Saliency)
from torch import nn

from .cam import CAMS, CamMethod
from .methods import LAYER_METHODS, SINGLE_PASS, canonical_method, resolve_layer
from ..errors import ExplainError, TargetError, UnknownOptionError
from ..data.images import BASELINES, make_baseline, normalisation
from ..models.info import info_of


@contextlib.contextmanager
def _quiet_guided_backprop():
    """GuidedBackprop warns on every call that it hooks ReLUs (and removes the hooks afterwards):
    silence that one warning around our own calls only, not process-wide."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU",
                                category=UserWarning)
        yield


# ------------------------------------------------------------------------------ locking
_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock serialising hook-registering work (Captum, capture around Captum) on ``model``."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


# ------------------------------------------------------------------------------ Explainer
# The layer from which the running context's forward pass needs autograd (see _Forward).
_GRAD_FROM: contextvars.ContextVar = contextvars.ContextVar("attnviz_grad_from", default=None)


def _grad_on(module, *args):
    """Forward (pre-)hook on the Grad-CAM layer: autograd from here on, in the context whose
    _Forward asked for it (other threads' passes through the same layer are left alone)."""
    if _GRAD_FROM.get() is module:
        torch.set_grad_enabled(True)


class _Forward(nn.Module):
    """Wraps a classifier for Captum and keeps the logits of the last call (so a caller gets the
    prediction from the pass Captum makes). ``top=True`` returns each sample's largest logit as
    (B, 1): the gradient of the max is the gradient of the predicted class's logit, so attributing
    target 0 there attributes the predicted class with no separate forward pass.

    ``grad_from`` (a submodule): while ``prefix_no_grad`` is set, the pass runs under
    ``torch.no_grad()`` until that module (its hook turns autograd back on), so the part of the
    network before the layer builds no graph. Only for gradients taken at that layer."""

    def __init__(self, model: nn.Module, top: bool = False, grad_from: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.top = top
        self.logits = None
        self.grad_from = grad_from
        self.prefix_no_grad = False

    def forward(self, x):
        if self.prefix_no_grad and torch.is_grad_enabled():
            token = _GRAD_FROM.set(self.grad_from)
            try:
                with torch.no_grad():
                    logits = self.model(x)
            finally:
                _GRAD_FROM.reset(token)
        else:
            logits = self.model(x)
        self.logits = logits.detach()
        return logits.max(1, keepdim=True).values if self.top else logits


@contextlib.contextmanager
def _seeded(seed, device):
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    np_state = np.random.get_state()  # GradientShap draws its baselines with numpy
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            np.random.seed(int(seed))
            yield
    finally:
        np.random.set_state(np_state)


def _draws_random(method: str, opts: dict) -> bool:
    """Whether ``method`` with ``opts`` draws random numbers (and so is seeded)."""
    if method in ("smoothgrad", "gradient_shap"):
        return True
    spec = opts.get("baseline")
    if isinstance(spec, str):
        return spec == "noise"
    return isinstance(spec, (list, tuple)) and "noise" in spec


def _stats(model):
    info = info_of(model)
    return normalisation(info)


class Explainer:
    """One Captum attribution object for a model, built once and reused.

    ``attribute(inputs, target, **opts)`` returns exactly what Captum returns. Options:
        gradcam: relu_attributions (False), attribute_to_layer_input (False)
        guided_gradcam: interpolate_mode ("nearest")
        integrated_gradients: n_steps (32), internal_batch_size (16), baseline ("black"; also
            "white", "mean", "blur", "noise" or a tensor), ig_method ("gausslegendre")
        smoothgrad: nt_samples (16), stdevs (None: noise_level x the input's range),
            noise_level (0.15), nt_samples_batch_size (8)
        saliency: abs (True)
        occlusion: window (S/8), stride (window/2), baseline ("mean"), perturbations_per_eval (16)
        gradient_shap: n_samples (16), stdevs (0.09 x range), baseline (("black", "noise",
            "mean")), a distribution of baselines
        gradcam++, xgradcam, layercam, hirescam, eigencam: none; scorecam, ablationcam:
            batch_size (32), masked / ablated passes per forward. These return (B, 1, h, w) on
            the layer's grid before the ReLU (see :mod:`attnviz.attribution.cam`); EigenCAM
            needs no target (its ``target`` is the predicted class, or None for a model that
            does not return (B, classes) logits).
    Randomised methods (smoothgrad, gradient_shap, "noise" baselines) draw from a fixed ``seed``
    (0) unless ``seed=None``.
    """

    def __init__(self, model: nn.Module, method: str = "gradcam", layer=None):
        self.model = model
        self.method = canonical_method(method)
        self.layer_name, self.layer = (resolve_layer(model, layer) if self.method in LAYER_METHODS
                                       else (None, None))
        self._lock = model_lock(model)
        self._cam = None
        if self.method in CAMS:  # the CAM family: plain torch on the layer (attribution/cam.py)
            self._cam = CamMethod(model, self.method, self.layer, self.layer_name)
            self._prefix_ok = False
            self._fwd = self._top = self._algo_top = self._algo = None
            return
        # Grad-CAM's gradient stops at its layer: the pass before it needs no autograd. Turned
        # off for good if a model cannot run that way (an in-place op on a tensor from before
        # the layer, say); then every pass builds the whole graph, as Captum alone does.
        self._prefix_ok = self.method == "gradcam"
        grad_from = self.layer if self.method == "gradcam" else None
        if self.method in SINGLE_PASS:
            self._fwd = _Forward(model, grad_from=grad_from)
            self._top = _Forward(model, top=True, grad_from=grad_from)
            self._algo, self._algo_top = self._build(self._fwd), self._build(self._top)
        else:
            self._fwd = self._top = self._algo_top = None
            self._algo = self._build(model)

    def _build(self, fn):
        m = self.method
        if m == "gradcam":
            return LayerGradCam(fn, self.layer)
        if m == "guided_gradcam":
            return GuidedGradCam(fn, self.layer)
        if m == "integrated_gradients":
            return IntegratedGradients(fn)
        if m == "smoothgrad":
            return NoiseTunnel(Saliency(fn))
        if m == "saliency":
            return Saliency(fn)
        if m == "occlusion":
            return Occlusion(fn)
        return GradientShap(fn)

    def attribute(self, inputs: torch.Tensor, target=None, **opts) -> torch.Tensor:
        """Captum's attribution of ``inputs`` ((B, 3, S, S), normalised) for ``target`` (an int, a
        list of ints per sample, or None for the predicted class)."""
        return self.attribute_with_logits(inputs, target, **opts)[0]

    def attribute_with_target(self, inputs, target=None, **opts):
        """The old name of :meth:`attribute_with_logits`."""
        return self.attribute_with_logits(inputs, target, **opts)

    def attribute_with_logits(self, inputs, target=None, **opts):
        """(raw attribution, target as a (B,) long tensor, logits). The logits come from the
        pass Captum made for single-pass methods (gradcam, guided_gradcam, saliency); other
        methods return None unless target was None (then one no_grad forward found it)."""
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
            raise ExplainError("inputs must be a (B, 3, S, S) tensor; use attnviz.explain() for "
                               "images")
        seed = opts.pop("seed", 0)
        if self._cam is not None:
            with self._lock:
                return self._cam.attribute(inputs, target, **opts)
        if self.method == "gradcam":
            x = inputs.detach()  # Captum's Grad-CAM neither needs nor sets the input's grad
        else:
            x = inputs.detach().clone().requires_grad_(True)
        seeded = _seeded(seed, x.device) if _draws_random(self.method, opts) else \
            contextlib.nullcontext()
        with self._lock, seeded:
            if self.method == "gradcam" and self._prefix_ok:
                try:
                    return self._attribute(x, target, opts, prefix=True)
                except RuntimeError as e:
                    if "inplace" not in str(e) and "in-place" not in str(e) \
                            and "view" not in str(e) and "does not require grad" not in str(e):
                        raise
                    self._prefix_ok = False
            return self._attribute(x, target, opts, prefix=False)

    def _attribute(self, x, target, opts, prefix: bool):
        logits = None
        handle = None
        if prefix:
            at_input = bool(opts.get("attribute_to_layer_input", False))
            handle = (self.layer.register_forward_pre_hook(_grad_on) if at_input else
                      self.layer.register_forward_hook(_grad_on))
        try:
            if target is None and self._algo_top is not None:
                self._top.prefix_no_grad = prefix
                raw = self._call(self._algo_top, x, 0, opts)
                logits = self._top.logits
                self._top.logits = None
                tgt = logits.argmax(1)
            else:
                if target is None:
                    with torch.no_grad():
                        logits = self.model(x.detach())
                    tgt = logits.argmax(1)
                else:
                    tgt = _target_tensor(target, x.shape[0], x.device)
                if self._fwd is not None:
                    self._fwd.prefix_no_grad = prefix
                raw = self._call(self._algo, x, tgt, opts)
                if self._fwd is not None:
                    logits, self._fwd.logits = self._fwd.logits, None
        finally:
            if handle is not None:
                handle.remove()
        return raw.detach(), tgt.detach().cpu(), logits

    def _call(self, algo, x, target, opts):
        m = self.method
        o = dict(opts)
        try:
            if m == "gradcam":
                out = algo.attribute(x, target=target,
                                     relu_attributions=o.pop("relu_attributions", False),
                                     attribute_to_layer_input=o.pop("attribute_to_layer_input",
                                                                    False))
            elif m == "guided_gradcam":
                with _quiet_guided_backprop():
                    out = algo.attribute(x, target=target,
                                         interpolate_mode=o.pop("interpolate_mode", "nearest"))
            elif m == "saliency":
                out = algo.attribute(x, target=target, abs=o.pop("abs", True))
            elif m == "integrated_gradients":
                base = self._baselines(x, o.pop("baseline", "black"), single=True)
                out = algo.attribute(x, baselines=base, target=target,
                                     n_steps=int(o.pop("n_steps", 32)),
                                     internal_batch_size=o.pop("internal_batch_size", 16),
                                     method=o.pop("ig_method", "gausslegendre"))
            elif m == "smoothgrad":
                level = float(o.pop("noise_level", 0.15))
                stdevs = o.pop("stdevs", None)
                if stdevs is None:
                    stdevs = level * float(x.detach().max() - x.detach().min())
                out = algo.attribute(x, nt_type="smoothgrad",
                                     nt_samples=int(o.pop("nt_samples", 16)),
                                     nt_samples_batch_size=o.pop("nt_samples_batch_size", 8),
                                     stdevs=float(stdevs), target=target)
            elif m == "occlusion":
                size = x.shape[-1]
                win = int(o.pop("window", max(4, size // 8)))
                stride = int(o.pop("stride", max(1, win // 2)))
                base = self._baselines(x, o.pop("baseline", "mean"), single=True)
                out = algo.attribute(x, sliding_window_shapes=(x.shape[1], win, win),
                                     strides=(x.shape[1], stride, stride), baselines=base,
                                     target=target,
                                     perturbations_per_eval=int(
                                         o.pop("perturbations_per_eval", 16)))
            else:  # gradient_shap
                base = self._baselines(x, o.pop("baseline", ("black", "noise", "mean")),
                                       single=False)
                stdevs = o.pop("stdevs", None)
                if stdevs is None:
                    stdevs = 0.09 * float(x.detach().max() - x.detach().min())
                out = algo.attribute(x, baselines=base, n_samples=int(o.pop("n_samples", 16)),
                                     stdevs=float(stdevs), target=target)
        except (IndexError, RuntimeError) as e:
            n = _num_classes(self.model, x)
            if torch.is_tensor(target) and int(target.max()) >= n:
                raise TargetError(f"target {int(target.max())} is not a class of this model "
                                  f"(0..{n - 1})") from e
            raise
        if o:
            raise UnknownOptionError(f"unknown option(s) {sorted(o)} for {m}")
        return out

    def _baselines(self, x, spec, single: bool):
        """Baseline tensor(s) for x: a name, a tensor, a number, or (gradient_shap) a list."""
        if isinstance(spec, torch.Tensor):
            return spec.to(x.device, x.dtype)
        if isinstance(spec, (int, float)):
            return spec
        names = [spec] if isinstance(spec, str) else list(spec)
        bad = [n for n in names if n not in BASELINES]
        if bad:
            raise UnknownOptionError(f"unknown baseline {bad}; choose from {list(BASELINES)}")
        mean, std = _stats(self.model)
        parts = [make_baseline(x.detach(), n, mean, std) for n in names]
        if single:
            if len(parts) != 1:
                raise ExplainError(f"{self.method} takes one baseline, got {names}")
            return parts[0]
        return torch.cat(parts, 0)


def _num_classes(model, x) -> int:
    """The model's number of classes (one no-grad forward of one sample; error paths only)."""
    with torch.no_grad():
        return int(model(x[:1].detach()).shape[1])


def _target_tensor(target, batch: int, device) -> torch.Tensor:
    try:
        t = torch.as_tensor(target, device=device).reshape(-1)
        if t.dtype == torch.bool or (t.is_floating_point() and not torch.equal(t, t.round())):
            raise TypeError(f"a class index is an integer, not {t.dtype}")
        t = t.long()
    except (TypeError, ValueError, RuntimeError) as e:
        raise TargetError(f"target {target!r} is not a class index") from e
    if (t < 0).any():
        raise TargetError(f"target {target!r} is not a class of this model (negative index)")
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ExplainError(f"got {t.numel()} targets for {batch} inputs")
    return t.clone()


# ------------------------------------------------------------------------------ cache
_EXPLAINERS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def get_explainer(model: nn.Module, method: str, layer=None) -> Explainer:
    """The cached :class:`Explainer` for (model, method, layer)."""
    key = (method, layer if (layer is None or isinstance(layer, str)) else id(layer))
    cache = _EXPLAINERS.get(model)
    exp = None if cache is None else cache.get(key)  # the common case: no lock, no parsing
    if exp is not None:
        return exp
    method = canonical_method(method)
    with _LOCKS_GUARD:
        cache = _EXPLAINERS.setdefault(model, {})
        exp = cache.get(key)
    if exp is None:
        exp = Explainer(model, method, layer)
        with _LOCKS_GUARD:
            cache[key] = cache.get(key) or exp
            cache.setdefault((method,) + key[1:], cache[key])
            exp = cache[key]
    return exp
