"""The CAM family beyond Grad-CAM, in plain torch on one layer's activations (and gradients).

    Grad-CAM++    Chattopadhyay et al., "Grad-CAM++: Generalized Gradient-based Visual
                  Explanations for Deep Convolutional Networks", WACV 2018 (arXiv:1710.11063)
    XGrad-CAM     Fu et al., "Axiom-based Grad-CAM", BMVC 2020 (arXiv:2008.02312)
    LayerCAM      Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
                  Localization", IEEE TIP 30, 2021 (doi:10.1109/TIP.2021.3089943)
    HiResCAM      Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations
                  of convolutional neural networks", 2020 (arXiv:2011.08891)
    Score-CAM     Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional
                  Neural Networks", CVPR-W 2020 (arXiv:1910.01279)
    Ablation-CAM  Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional
                  Network via Gradient-free Localization", WACV 2020
    EigenCAM      Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal
                  Components", IJCNN 2020 (arXiv:2008.00299)

With A the layer's activations (B, K, h, w) and G = dy_c/dA the gradient of the target logit:

    Grad-CAM++    alpha = G^2 / (2 G^2 + sum_ab A_ab G^3)   (0 where G = 0; the paper's eq. 19,
                  exponential-output form), w_k = sum_ij alpha relu(G), cam = sum_k w_k A_k
    XGrad-CAM     w_k = sum_ij G_ij A_ij / sum_ab A_ab, cam = sum_k w_k A_k
    LayerCAM      cam = sum_k relu(G_k) * A_k                       (weights per position)
    HiResCAM      cam = sum_k G_k * A_k                              (weights per position)
    Score-CAM     M_k = minmax(upsample(A_k)); w = softmax_k(y_c(x * M_k)); cam = sum_k w_k A_k
    Ablation-CAM  w_k = (y_c - y_c(A with channel k zeroed)) / y_c; cam = sum_k w_k A_k
    EigenCAM      cam = the positions' projection on the first principal component of A
                  (positions x channels, centred per channel); no target, no gradient

Every ``raw`` map is (B, 1, h, w) on the layer's grid before the ReLU that the displayed map
applies (as Captum's Grad-CAM). Gradient methods take one forward and one backward for a whole
batch, and the part of the network before the layer runs without autograd (the gradient never
reaches it). Score-CAM and Ablation-CAM run their masked or ablated passes ``batch_size`` at a
time over every (image, channel) pair; Ablation-CAM computes the part before the layer once per
image where the network allows it (a batch of one broadcast after the layer), else repeats it.
EigenCAM reads any module's output (a (B, C, H, W) map, or (B, N, C) tokens on a square grid,
with or without a leading class token) and needs neither a target nor a classifier.

Hooks live only inside :meth:`CamMethod.attribute` (removed in ``finally``); the model's
train/eval state is never changed. Callers serialise calls per model (``attnviz.explain`` holds
the model's lock)."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ExplainError, LayerError, TargetError, UnknownOptionError


@dataclass(frozen=True)
class CamSpec:
    """One CAM method: ``needs`` is what it reads ("gradient", "scores": extra forward passes,
    "activations": the layer's output only); ``target`` whether it explains a class."""

    name: str
    title: str
    needs: str
    paper: str
    target: bool = True


CAMS = {s.name: s for s in (
    CamSpec("gradcam++", "Grad-CAM++", "gradient", "arXiv:1710.11063"),
    CamSpec("xgradcam", "XGrad-CAM", "gradient", "arXiv:2008.02312"),
    CamSpec("layercam", "LayerCAM", "gradient", "doi:10.1109/TIP.2021.3089943"),
    CamSpec("hirescam", "HiResCAM", "gradient", "arXiv:2011.08891"),
    CamSpec("scorecam", "Score-CAM", "scores", "arXiv:1910.01279"),
    CamSpec("ablationcam", "Ablation-CAM", "scores", "WACV 2020"),
    CamSpec("eigencam", "EigenCAM", "activations", "arXiv:2008.00299", target=False),
)}
CAM_ALIASES = {
    "grad-cam++": "gradcam++", "gradcampp": "gradcam++", "gradcamplusplus": "gradcam++",
    "grad_cam++": "gradcam++", "grad_cam_plusplus": "gradcam++", "gradcam_pp": "gradcam++",
    "gradcam_plusplus": "gradcam++", "grad-cam-pp": "gradcam++",
    "x-gradcam": "xgradcam", "xgrad-cam": "xgradcam", "xgrad_cam": "xgradcam",
    "x_grad_cam": "xgradcam",
    "layer-cam": "layercam", "layer_cam": "layercam",
    "hires-cam": "hirescam", "hires_cam": "hirescam",
    "score-cam": "scorecam", "score_cam": "scorecam",
    "ablation-cam": "ablationcam", "ablation_cam": "ablationcam",
    "eigen-cam": "eigencam", "eigen_cam": "eigencam",
}
DEFAULT_BATCH = 32


def cam_name(method: str) -> str | None:
    """The CAM family's own name for ``method`` (an alias or a name), or None."""
    m = str(method).strip().lower().replace(" ", "_")
    m = CAM_ALIASES.get(m, m)
    return m if m in CAMS else None


# ------------------------------------------------------------------------- the formulas
def _positions(t: torch.Tensor) -> tuple:
    return tuple(range(2, t.dim()))


def weighted_sum(acts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_k w_k A_k for weights (B, K): (B, 1, h, w)."""
    w = weights.reshape(weights.shape + (1,) * (acts.dim() - 2))
    return (w * acts).sum(1, keepdim=True)


def gradcam_weights(acts, grads):
    """Grad-CAM's w_k: the gradient averaged over positions (for the family's invariants)."""
    return grads.mean(_positions(grads))


def gradcampp_weights(acts, grads, eps: float = 1e-6):
    """Grad-CAM++'s w_k = sum_ij alpha_ij relu(G_ij), alpha = G^2 / (2 G^2 + sum_ab A_ab G^3)."""
    g2 = grads * grads
    g3 = g2 * grads
    act_sum = acts.sum(_positions(acts), keepdim=True)
    alpha = g2 / (2 * g2 + act_sum * g3 + eps)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (alpha * grads.clamp_min(0)).sum(_positions(grads))


def xgradcam_weights(acts, grads, eps: float = 1e-7):
    """XGrad-CAM's w_k = sum_ij G_ij A_ij / (sum_ab A_ab)."""
    act_sum = acts.sum(_positions(acts), keepdim=True)
    return (grads * acts / (act_sum + eps)).sum(_positions(grads))


def layercam(acts, grads):
    """LayerCAM: sum_k relu(G_k) * A_k, weights per position."""
    return (grads.clamp_min(0) * acts).sum(1, keepdim=True)


def hirescam(acts, grads):
    """HiResCAM: sum_k G_k * A_k, the gradient times the activation at each position."""
    return (grads * acts).sum(1, keepdim=True)


def eigencam(acts: torch.Tensor) -> torch.Tensor:
    """EigenCAM: each position's projection on the first right singular vector of A reshaped to
    (positions, channels) and centred per channel. The SVD leaves the sign open: it is fixed so
    that the largest magnitude is positive (Seg-Eigen-CAM's eq. 13, Chung & Ying 2025)."""
    b = acts.shape[0]
    x = torch.nan_to_num(acts.detach().float()).flatten(2).transpose(1, 2)  # (B, hw, K)
    x = x - x.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    proj = (x @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)  # (B, hw)
    flip = proj.amin(1).abs() > proj.amax(1).abs()
    proj = torch.where(flip[:, None], -proj, proj)
    return proj.reshape((b, 1) + acts.shape[2:]).to(acts.dtype)


def minmax_masks(acts: torch.Tensor, size) -> torch.Tensor:
    """Score-CAM's masks: each channel upsampled (bilinear, corners aligned as pytorch-grad-cam's
    ``UpsamplingBilinear2d``) to ``size`` and scaled to [0, 1]."""
    up = F.interpolate(acts, size=size, mode="bilinear", align_corners=True)
    flat = up.flatten(2)
    lo = flat.amin(-1)[..., None, None]
    hi = flat.amax(-1)[..., None, None]
    return (up - lo) / (hi - lo + 1e-8)


GRADIENT_MAPS = {
    "gradcam++": lambda a, g: weighted_sum(a, gradcampp_weights(a, g)),
    "xgradcam": lambda a, g: weighted_sum(a, xgradcam_weights(a, g)),
    "layercam": layercam,
    "hirescam": hirescam,
}


# ------------------------------------------------------------------------- the layer's output
def spatial(out, where: str = "the layer") -> torch.Tensor:
    """A module's output as a (B, C, h, w) map: the first tensor of a tuple/list/dict; (B, N, C)
    tokens on a square grid (or a square grid after one class token) are laid out as
    (B, C, s, s)."""
    if isinstance(out, dict):
        out = next(iter(out.values()), None)
    while isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise LayerError(f"{where}'s output is not a tensor; choose a layer that outputs a map")
    if out.dim() == 4:
        return out
    if out.dim() == 3:
        n = out.shape[1]
        for drop in (0, 1):
            s = math.isqrt(n - drop)
            if s > 1 and s * s == n - drop:
                return out[:, drop:].transpose(1, 2).reshape(out.shape[0], out.shape[2], s, s)
    raise LayerError(f"{where}'s output has shape {tuple(out.shape)}, not a spatial map "
                     "(B, C, H, W) or square-grid tokens (B, N, C); choose a convolutional layer")


class _Tap:
    """Forward hook on the CAM layer: keeps its output (as a map) and, for gradient methods,
    turns autograd on from the layer and hands the network a copy of a fresh leaf, so the
    gradient at the layer is taken against that leaf and nothing before the layer keeps a graph."""

    def __init__(self, name: str, grad: bool):
        self.name, self.grad = name, grad
        self.acts = None
        self.calls = 0

    def __call__(self, module, inputs, out):
        self.calls += 1
        if self.grad:
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                raise LayerError(f"layer {self.name!r} outputs "
                                 f"{tuple(out.shape) if torch.is_tensor(out) else type(out)}, "
                                 "not a (B, C, H, W) map; choose a convolutional layer")
            torch.set_grad_enabled(True)  # restored when the caller's no_grad() block exits
            self.acts = out.detach().requires_grad_(True)
            return self.acts.clone()
        self.acts = spatial(out, f"layer {self.name!r}").detach().clone()
        return None


def _check_target(t: torch.Tensor, n_classes: int):
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n_classes):
        bad = int(t.max()) if int(t.max()) >= n_classes else int(t.min())
        raise TargetError(f"target {bad} is not a class of this model (0..{n_classes - 1})")


def _pick(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


class CamMethod:
    """One CAM method on one layer of ``model``, built once; ``attribute(x, target)`` returns
    (raw (B, 1, h, w) before the ReLU, target (B,) long or None, logits or None).

    ``target``: None (each image's predicted class), an int, or a (B,) tensor/list of ints.
    Options: ``batch_size`` (Score-CAM, Ablation-CAM: masked/ablated passes per forward,
    default 32)."""

    def __init__(self, model: nn.Module, method: str, layer: nn.Module, layer_name: str = ""):
        name = cam_name(method)
        if name is None:
            raise UnknownOptionError(f"{method!r} is not a CAM method; choose from {list(CAMS)}")
        self.model, self.method, self.spec = model, name, CAMS[name]
        self.layer, self.layer_name = layer, layer_name or "the layer"
        # Ablation-CAM: pre-layer part once per image? (see _ablated_scores)
        self._broadcast_ok = None

    @contextlib.contextmanager
    def _tapped(self, grad: bool):
        tap = _Tap(self.layer_name, grad)
        handle = self.layer.register_forward_hook(tap)
        try:
            yield tap
        finally:
            handle.remove()

    def attribute(self, x: torch.Tensor, target=None, batch_size: int = DEFAULT_BATCH, **opts):
        if opts:
            raise UnknownOptionError(f"unknown option(s) {sorted(opts)} for {self.method}")
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ExplainError("inputs must be a (B, 3, S, S) tensor; use attnviz.explain() for "
                               "images")
        batch_size = int(batch_size)
        if batch_size < 1:
            raise UnknownOptionError(f"batch_size must be >= 1, got {batch_size}")
        x = x.detach()
        grad = self.spec.needs == "gradient"
        if grad:
            with torch.enable_grad(), self._tapped(True) as tap:
                with torch.no_grad():
                    logits = self.model(x)
                self._check_calls(tap)
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                    raise ExplainError(f"{self.spec.title} explains a class score: the model must "
                                       "return (B, classes) logits")
                tgt = self._target(target, logits)
                score = _pick(logits, tgt).sum()
                if not score.requires_grad:
                    raise LayerError(f"the class score does not depend on layer "
                                     f"{self.layer_name!r}; choose a layer on the way to it")
                (g,) = torch.autograd.grad(score, tap.acts)
                acts = tap.acts.detach()
            raw = GRADIENT_MAPS[self.method](acts, g)
            return raw.detach(), tgt.cpu(), logits.detach()
        with self._tapped(False) as tap, torch.no_grad():
            out = self.model(x)
            self._check_calls(tap)
        acts = tap.acts
        logits = out if isinstance(out, torch.Tensor) and out.dim() == 2 else None
        if self.method == "eigencam":
            tgt = None if logits is None else self._target(target, logits)
            return eigencam(acts), (None if tgt is None else tgt.cpu()), logits
        if logits is None:
            raise ExplainError(f"{self.spec.title} explains a class score: the model must return "
                               "(B, classes) logits")
        tgt = self._target(target, logits)
        with torch.no_grad():
            if self.method == "scorecam":
                w = self._score_weights(x, acts, tgt, batch_size)
            else:
                w = self._ablation_weights(x, acts, tgt, _pick(logits, tgt), batch_size)
        return weighted_sum(acts, w.to(acts.dtype)), tgt.cpu(), logits

    def _check_calls(self, tap):
        if tap.calls != 1:
            raise LayerError(f"layer {self.layer_name!r} ran {tap.calls} times in one forward "
                             "pass; choose a layer that runs exactly once")

    @staticmethod
    def _target(target, logits) -> torch.Tensor:
        b, n = logits.shape
        if target is None:
            return logits.argmax(1)
        try:
            t = torch.as_tensor(target, device=logits.device).reshape(-1)
            if t.dtype == torch.bool or (t.is_floating_point() and not torch.equal(t, t.round())):
                raise TypeError
            t = t.long()
        except (TypeError, ValueError, RuntimeError) as e:
            raise TargetError(f"target {target!r} is not a class index") from e
        if t.numel() == 1:
            t = t.expand(b)
        if t.numel() != b:
            raise ExplainError(f"got {t.numel()} targets for {b} inputs")
        _check_target(t, n)
        return t.clone()

    def _pairs(self, b: int, k: int, batch_size: int):
        """(image, first channel, channels) chunks over every (image, channel) pair."""
        for i in range(b):
            for c in range(0, k, batch_size):
                yield i, c, min(batch_size, k - c)

    def _score_weights(self, x, acts, tgt, batch_size):
        """softmax over channels of the target logit on the input masked by each channel."""
        b, k = acts.shape[:2]
        scores = torch.empty(b, k, device=x.device)
        for i, c, n in self._pairs(b, k, batch_size):
            masks = minmax_masks(acts[i:i + 1, c:c + n].transpose(0, 1), x.shape[-2:])
            out = self.model(x[i:i + 1] * masks)
            scores[i, c:c + n] = out[:, tgt[i]].float()
        return scores.softmax(1)

    def _ablation_weights(self, x, acts, tgt, base, batch_size):
        """(y_c - y_c with channel k of the layer's output zeroed) / y_c per channel."""
        b, k = acts.shape[:2]
        drop = torch.empty(b, k, device=x.device)
        for i, c, n in self._pairs(b, k, batch_size):
            ablated = acts[i:i + 1].expand(n, *acts.shape[1:]).clone()
            ablated[torch.arange(n), torch.arange(c, c + n)] = 0
            drop[i, c:c + n] = self._ablated_scores(x[i:i + 1], ablated, int(tgt[i]))
        y = base.float()[:, None]
        y = torch.where(y.abs() < 1e-12, torch.full_like(y, 1e-12), y)
        return (y - drop) / y

    def _ablated_scores(self, xi, ablated, target: int):
        """The target logit with the layer's output replaced by each ablated copy: from a batch
        of one broadcast after the layer where that gives the same numbers as repeating the
        image (checked on the first chunk; a network that reshapes or mixes the batch fails the
        check and is run on the repeated image from then on)."""
        fast = None
        if self._broadcast_ok is not False:
            try:
                fast = self._swapped(xi, ablated, target)
            except RuntimeError:
                fast = None
            if fast is not None and self._broadcast_ok:
                return fast
        slow = self._swapped(xi.expand(ablated.shape[0], *xi.shape[1:]), ablated, target)
        if slow is None:
            raise ExplainError("Ablation-CAM needs the model to return (B, classes) logits")
        if self._broadcast_ok is None:
            self._broadcast_ok = fast is not None and torch.allclose(fast, slow, rtol=1e-4,
                                                                     atol=1e-5)
        return slow

    def _swapped(self, x, ablated, target: int):
        def swap(module, inputs, out):
            return ablated.to(out.dtype) if isinstance(out, torch.Tensor) else out

        handle = self.layer.register_forward_hook(swap)
        try:
            out = self.model(x)
        finally:
            handle.remove()
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or \
                out.shape[0] != ablated.shape[0]:
            return None
        return out[:, target].float()
