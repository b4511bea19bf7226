"""pytorch-grad-cam's CAM pipeline, re-written for the tests from its source (jacobgil/
pytorch-grad-cam, commit 084273b: base_cam.py, activations_and_gradients.py, grad_cam.py,
grad_cam_plusplus.py, xgrad_cam.py, layer_cam.py, hirescam.py, score_cam.py, ablation_cam.py,
ablation_layer.py, eigen_cam.py, utils/svd_on_activations.py, utils/image.py): the library
itself imports torchvision, scipy, scikit-learn and ttach at the top of its modules, none of which
is installed here. Same steps, same order, numpy where it uses numpy: a forward hook storing the
activation and a tensor hook storing its gradient, ``loss.backward()`` on the target logit,
per-method weights, ``np.maximum(cam, 0)``, then ``scale_cam_image`` (min-max, ``cv2.resize`` to
the input). When the real package is importable, :func:`real` returns it instead."""
from __future__ import annotations

import cv2
import numpy as np
import torch


def real():
    """pytorch_grad_cam itself, or None where it cannot be imported."""
    try:
        import pytorch_grad_cam
        return pytorch_grad_cam
    except Exception:  # noqa: BLE001  ImportError, or one of its own imports failing (torchvision, ...)
        return None


def scale_cam_image(cam, target_size=None):
    result = []
    for img in cam:
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        if target_size is not None:
            img = cv2.resize(np.float32(img), target_size)
        result.append(img)
    return np.float32(result)


def get_2d_projection(activation_batch):
    activation_batch = activation_batch.copy()
    activation_batch[np.isnan(activation_batch)] = 0
    projections = []
    for activations in activation_batch:
        reshaped = activations.reshape(activations.shape[0], -1).transpose()
        reshaped = reshaped - reshaped.mean(axis=0)
        _, _, vt = np.linalg.svd(reshaped, full_matrices=True)
        projections.append((reshaped @ vt[0, :]).reshape(activations.shape[1:]))
    return np.float32(projections)


def _weights(method, activations, grads):
    if method == "gradcam":
        return np.mean(grads, axis=(2, 3))
    if method == "gradcam++":
        grads_power_2 = grads ** 2
        grads_power_3 = grads_power_2 * grads
        sum_activations = np.sum(activations, axis=(2, 3))
        aij = grads_power_2 / (2 * grads_power_2 + sum_activations[:, :, None, None]
                               * grads_power_3 + 0.000001)
        aij = np.where(grads != 0, aij, 0)
        return np.sum(np.maximum(grads, 0) * aij, axis=(2, 3))
    if method == "xgradcam":
        sum_activations = np.sum(activations, axis=(2, 3))
        return (grads * activations / (sum_activations[:, :, None, None] + 1e-7)).sum(axis=(2, 3))
    raise KeyError(method)


def _score_weights(model, x, activations, targets, batch=16):
    with torch.no_grad():
        upsample = torch.nn.UpsamplingBilinear2d(size=x.shape[-2:])
        upsampled = upsample(torch.from_numpy(activations))
        maxs = upsampled.view(upsampled.size(0), upsampled.size(1), -1).max(dim=-1)[0]
        mins = upsampled.view(upsampled.size(0), upsampled.size(1), -1).min(dim=-1)[0]
        maxs, mins = maxs[:, :, None, None], mins[:, :, None, None]
        upsampled = (upsampled - mins) / (maxs - mins + 1e-8)
        inputs = x[:, None, :, :] * upsampled[:, :, None, :, :]
        scores = []
        for target, tensor in zip(targets, inputs):
            for i in range(0, tensor.size(0), batch):
                scores.extend(float(o[target]) for o in model(tensor[i:i + batch]))
        scores = torch.Tensor(scores).view(activations.shape[0], activations.shape[1])
        return torch.nn.Softmax(dim=-1)(scores).numpy()


def _ablation_weights(model, layer, x, activations, targets, batch=32):
    acts = torch.from_numpy(activations)
    with torch.no_grad():
        original = np.float32([float(o[t]) for t, o in zip(targets, model(x))])
    weights = []
    for b, target in enumerate(targets):
        n_ch = acts.shape[1]
        for i in range(0, n_ch, batch):
            n = min(batch, n_ch - i)
            out = acts[b].clone().unsqueeze(0).repeat(n, 1, 1, 1)
            for j in range(n):  # AblationLayer.__call__
                if torch.min(out) == 0:
                    out[j, i + j, :] = 0
                else:
                    out[j, i + j, :] = torch.min(out) - 1e7
            handle = layer.register_forward_hook(lambda m, inp, o, out=out: out)
            try:
                with torch.no_grad():
                    weights.extend(float(o[target]) for o in model(x[b:b + 1].repeat(n, 1, 1, 1)))
            finally:
                handle.remove()
    weights = np.float32(weights).reshape(activations.shape[:2])
    return (original[:, None] - weights) / original[:, None]


def cam(model, layer, x: torch.Tensor, method: str, targets, eigen_sign: int = 1) -> np.ndarray:
    """The reference's map (B, S, S) in [0, 1] for ``method`` at ``layer`` on input ``x``.
    ``eigen_sign``: EigenCAM's SVD sign is whatever LAPACK returns; -1 flips it."""
    store = {}

    def save(module, inputs, output):
        store["a"] = output.cpu().detach()
        if output.requires_grad:
            output.register_hook(lambda g: store.__setitem__("g", g.cpu().detach()))

    handle = layer.register_forward_hook(save)
    try:
        x = x.detach()
        outputs = model(x)
        if method not in ("scorecam", "ablationcam", "eigencam"):
            model.zero_grad()
            loss = sum(o[t] for t, o in zip(targets, outputs))
            loss.backward(retain_graph=True)
    finally:
        handle.remove()
    a = store["a"].numpy()
    g = store["g"].numpy() if "g" in store else None
    if method == "layercam":
        c = (np.maximum(g, 0) * a).sum(axis=1)
    elif method == "hirescam":
        c = (g * a).sum(axis=1)
    elif method == "eigencam":
        c = eigen_sign * get_2d_projection(a)
    else:
        if method == "scorecam":
            w = _score_weights(model, x, a, targets)
        elif method == "ablationcam":
            w = _ablation_weights(model, layer, x, a, targets)
        else:
            w = _weights(method, a, g)
        c = (w[:, :, None, None] * a).sum(axis=1)
    c = np.maximum(c, 0)
    return scale_cam_image(c, (x.shape[-1], x.shape[-2]))
