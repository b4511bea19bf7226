"""ROAD's noisy linear imputation: remove pixels without leaving their silhouette behind.

Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods" (ICML
2022) show that filling removed pixels with a constant (black, the mean colour) leaks the shape
of what was removed: a model still reads the object's class from the hole it leaves. Their fix
replaces every removed pixel by the weighted mean of its 8 neighbours (direct neighbours 1/6,
diagonal ones 1/12; at the image's edge the weights of the neighbours that exist), removed
neighbours included, so the removed pixels together solve one sparse linear system whose
boundary values are the kept pixels; then a little Gaussian noise is added.

    from attnviz.road import impute
    filled = impute(x, removed)        # x (N, C, H, W), removed (N, 1, H, W) bool

The system is symmetric positive definite (a graph Laplacian with the kept pixels as Dirichlet
boundary), so it is solved here by conjugate gradients, batched over
images and channels and started from the solution of the same problem on a 2x coarser grid
(a cascade down to 8 px), which leaves only the fine detail to the fine grid. The iteration
stops once every residual is below ``tol`` (relative to its right-hand side); the tests check the
result against an exact dense solve (:func:`dense_solve`) on small images. An image whose pixels
are all removed has no boundary to interpolate from: it becomes 0 (in normalised inputs, the
dataset's mean colour) plus the noise.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..errors import AttnvizError

#: ROAD's neighbour weights: direct neighbours 1/6, diagonal neighbours 1/12 (they sum to 1).
NEIGHBOUR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12),
                     (1 / 6, 0.0, 1 / 6),
                     (1 / 12, 1 / 6, 1 / 12))
NOISE = 0.01  # ROAD's default noise (std, in the units of the imputed tensor)


class ImputationError(AttnvizError, ValueError):
    """Bad input to the imputation (shapes that do not fit, a non-finite image, ...)."""


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of (M, L) tensors in one pass."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


class _Grid:
    """Images stored flat with a one-pixel zero border, (M, (H+2)(W+2)); the stencil is computed
    for the inner cells [Wp+1, L-Wp-1) only (``inner``), by the separable [1 2 1] x [1 2 1]
    stencil as shifted adds (a 3 x 3 conv2d on one channel is several times slower on a CPU)."""

    def __init__(self, H: int, W: int):
        self.H, self.W, self.Wp = H, W, W + 2
        self.L = (H + 2) * (W + 2)
        self.inner = slice(self.Wp + 1, self.L - self.Wp - 1)

    def pad(self, t: torch.Tensor) -> torch.Tensor:
        return F.pad(t.reshape(-1, self.H, self.W), (1, 1, 1, 1)).flatten(1)

    def stencil(self, p: torch.Tensor) -> torch.Tensor:
        """12 x (the weighted sum of the 8 neighbours) + 4 x the pixel, on the inner cells;
        p must be 0 on the border."""
        Wp = self.Wp
        h = p[:, :-2] + p[:, 2:]                      # cells 1 .. L-2
        h.add_(p[:, 1:-1], alpha=2)
        v = h[:, :-2 * Wp] + h[:, 2 * Wp:]            # cells Wp+1 .. L-Wp-2
        v.add_(h[:, Wp:-Wp], alpha=2)
        return v

    def unpad(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, 1, self.H + 2, self.Wp)[..., 1:-1, 1:-1]


def _cg(x: torch.Tensor, removed: torch.Tensor, guess: torch.Tensor | None, tol: float,
        max_iter: int) -> torch.Tensor:
    """Solve the imputation of (M, 1, H, W) systems (one per image and channel) by conjugate
    gradients on the removed pixels; returns the full images with the removed pixels filled in.
    (The matrix's diagonal is 1 except at the image's edge, so a Jacobi preconditioner buys
    nothing.) Systems that have converged leave the working set."""
    M, _, H, W = x.shape
    g = _Grid(H, W)
    inner = g.inner
    r = g.pad(removed.to(x.dtype))[:, inner]
    known = g.pad(x * (~removed).to(x.dtype))
    ones = g.pad(torch.ones(1, H, W, dtype=x.dtype, device=x.device))
    # the sum of the weights of each pixel's existing neighbours: 1 inside, less at the edge
    s = (g.stencil(ones) - 4 * ones[:, inner]) / 12
    c = r * (s + 1 / 3)     # A p = r (s p - neighbours(p)) = c p - d (12 neighbours(p) + 4 p)
    d = r / 12
    b = d * g.stencil(known)  # the kept pixels' pull on the removed ones (known is 0 there)
    vfull = torch.zeros_like(known)  # the unknowns (0 on kept pixels and the border)
    if guess is not None:
        vfull[:, inner] = r * g.pad(guess)[:, inner]

    def A(pfull):
        return torch.addcmul(c * pfull[:, inner], d, g.stencil(pfull), value=-1)

    res = b - A(vfull) if guess is not None else b.clone()
    bb = _dot(b, b).clamp_min(1e-24) * tol * tol
    pfull = torch.zeros_like(known)
    pfull[:, inner] = res
    rr = _dot(res, res)
    out = vfull.clone()
    act = torch.arange(M, device=x.device)
    for _ in range(max_iter):
        done = rr <= bb
        if bool(done.any()):
            out[act[done]] = vfull[done]
            if bool(done.all()):
                break
            if int(done.sum()) * 4 >= act.numel():  # drop the converged systems
                keep = (~done).nonzero().flatten()
                act, vfull, res, pfull, rr, c, d, bb = (
                    t[keep] for t in (act, vfull, res, pfull, rr, c, d, bb))
        Ap = A(pfull)
        p = pfull[:, inner]
        pAp = _dot(p, Ap)
        alpha = torch.where(pAp > 0, rr / pAp.clamp_min(1e-30), torch.zeros_like(pAp))[:, None]
        vfull[:, inner].addcmul_(alpha, p)
        res.addcmul_(alpha, Ap, value=-1)
        rr_new = _dot(res, res)
        beta = torch.where(rr > 0, rr_new / rr.clamp_min(1e-30), torch.zeros_like(rr))[:, None]
        p.mul_(beta).add_(res)  # in place: pfull's border stays 0
        rr = rr_new
    else:
        out[act] = vfull
    return g.unpad(known + out).contiguous()


def _solve(x: torch.Tensor, removed: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """Cascade: solve on the 2x coarser grid first, use it (upsampled) as the starting guess."""
    H, W = x.shape[-2:]
    guess = None
    if H % 2 == 0 and W % 2 == 0 and min(H, W) >= 16:
        keep = (~removed).to(x.dtype)
        kc = F.avg_pool2d(keep, 2)
        xc = F.avg_pool2d(x * keep, 2) / kc.clamp_min(1e-12)
        coarse = _solve(xc, kc == 0, tol, max_iter)
        guess = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
    return _cg(x, removed, guess, tol, max_iter)


def impute(x: torch.Tensor, removed: torch.Tensor, noise: float = NOISE,
           generator: torch.Generator | None = None, tol: float = 1e-3,
           max_iter: int = 2000) -> torch.Tensor:
    """ROAD noisy linear imputation of the ``removed`` pixels of ``x``.

    Args:
        x: images (N, C, H, W) (or one, (C, H, W)), float.
        removed: bool (N, 1, H, W), (N, H, W) or (H, W) (broadcast over images): True where a
            pixel is removed.
        noise: std of the Gaussian noise added to the imputed pixels (0: the exact solution).
        generator: for the noise (reproducible curves).
        tol: stop when every system's residual is below ``tol`` times its right-hand side.
    Returns a new tensor like ``x``; kept pixels are unchanged.
    """
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
        raise ImputationError("x must be a tensor of images, (N, C, H, W) or (C, H, W)")
    single = x.dim() == 3
    xb = x[None] if single else x
    N, C, H, W = xb.shape
    removed = torch.as_tensor(removed, device=x.device).bool()
    if removed.dim() == 2:
        removed = removed[None, None]
    elif removed.dim() == 3:
        removed = removed[:, None]
    if removed.dim() != 4 or removed.shape[-2:] != (H, W) or removed.shape[1] != 1 or \
            removed.shape[0] not in (1, N):
        raise ImputationError(f"the removal mask is {tuple(removed.shape)}; it must be (N, 1, H, "
                              f"W), (N, H, W) or (H, W) for images {tuple(xb.shape)}")
    if not torch.isfinite(xb).all():
        raise ImputationError("the image contains NaN or infinite values")
    removed = removed.expand(N, 1, H, W)
    out = xb.clone()
    flat = removed.flatten(1)
    out[flat.all(1)] = 0  # nothing left to interpolate from: 0 (the mean colour), plus noise
    rows = (flat.any(1) & ~flat.all(1)).nonzero().flatten()  # images with a system to solve
    if rows.numel():
        xs = xb[rows].reshape(-1, 1, H, W).float()
        rs = removed[rows].repeat_interleave(C, 0)
        with torch.no_grad():
            filled = _solve(xs, rs, float(tol), int(max_iter)).view(-1, C, H, W)
            if noise:
                eps = torch.randn(filled.shape, generator=generator, dtype=filled.dtype)
                filled = filled + float(noise) * eps.to(filled.device) * removed[rows].to(
                    filled.dtype)
        out[rows] = filled.to(out.dtype)
    if noise:
        empty = flat.all(1).nonzero().flatten()
        if empty.numel():
            eps = torch.randn((empty.numel(), C, H, W), generator=generator)
            out[empty] = float(noise) * eps.to(out.device, out.dtype)
    return out[0] if single else out


def dense_solve(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """The exact imputation (no noise) by a dense solve of ROAD's system, float64, written as
    ROAD's reference code builds it; for checking :func:`impute` on small images (the matrix has
    one row per removed pixel). x (C, H, W), removed (H, W) bool."""
    C, H, W = x.shape
    rem = torch.as_tensor(removed).bool().flatten()
    idx = rem.nonzero().flatten()
    n = idx.numel()
    out = x.double().reshape(C, -1).clone()
    if n == 0:
        return out.view(C, H, W)
    where = torch.full((H * W,), -1, dtype=torch.long)
    where[idx] = torch.arange(n)
    A = torch.zeros(n, n, dtype=torch.float64)
    b = torch.zeros(n, C, dtype=torch.float64)
    diag = torch.zeros(n, dtype=torch.float64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            w = NEIGHBOUR_WEIGHTS[dy + 1][dx + 1]
            if w == 0:
                continue
            for row, i in enumerate(idx.tolist()):
                y, xx = divmod(i, W)
                ny, nx = y + dy, xx + dx
                if not (0 <= ny < H and 0 <= nx < W):
                    continue
                diag[row] += w
                j = ny * W + nx
                if rem[j]:
                    A[row, where[j]] -= w
                else:
                    b[row] += w * out[:, j]
    A += torch.diag(diag)
    out[:, idx] = torch.linalg.solve(A, b).T
    return out.view(C, H, W)
