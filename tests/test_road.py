"""ROAD's noisy linear imputation against an exact dense solve of the same system, on small
images (including the image's edge, scattered and solid removals, several images at once)."""
import numpy as np
import pytest
import torch

from attnviz.scores import road
from attnviz.errors import AttnvizError


def _cases(seed):
    g = torch.Generator().manual_seed(seed)
    H, W = 20, 28
    blob = torch.zeros(H, W, dtype=torch.bool)
    blob[3:15, 5:21] = True
    edge = torch.zeros(H, W, dtype=torch.bool)
    edge[:, :22] = True  # touches three sides of the image
    scattered = torch.rand(H, W, generator=g) < 0.7
    one = torch.zeros(H, W, dtype=torch.bool)
    one[0, 0] = True  # a corner pixel: the mean of its 3 neighbours
    return torch.randn(4, 3, H, W, generator=g), torch.stack([blob, edge, scattered, one])[:, None]


def test_matches_the_exact_solve():
    x, removed = _cases(0)
    got = road.impute(x, removed, noise=0)
    for i in range(len(x)):
        exact = road.dense_solve(x[i], removed[i, 0])
        err = (got[i].double() - exact).abs().max().item()
        assert err < 5e-3, (i, err)  # far below the noise ROAD adds (0.01)
        keep = ~removed[i, 0]
        assert torch.equal(got[i][:, keep], x[i][:, keep])  # kept pixels untouched
    # the corner pixel is the weighted mean of its neighbours (1/6, 1/6, 1/12, renormalised)
    c = (x[3, :, 0, 1] / 6 + x[3, :, 1, 0] / 6 + x[3, :, 1, 1] / 12) / (5 / 12)
    assert torch.allclose(got[3, :, 0, 0], c, atol=1e-4)
    # tighter tolerance, closer answer: the iteration converges to the exact solution
    tight = road.impute(x[:1], removed[:1], noise=0, tol=1e-7)
    exact = road.dense_solve(x[0], removed[0, 0])
    assert (tight[0].double() - exact).abs().max().item() < 1e-4


def test_the_solution_is_harmonic():
    """Every removed pixel equals the weighted mean of its neighbours (ROAD's definition)."""
    x, removed = _cases(1)
    out = road.impute(x, removed, noise=0, tol=1e-7).double()
    w = torch.tensor(road.NEIGHBOUR_WEIGHTS, dtype=torch.float64).view(1, 1, 3, 3)
    flat = out.reshape(-1, 1, *out.shape[-2:])
    num = torch.nn.functional.conv2d(flat, w, padding=1)
    den = torch.nn.functional.conv2d(torch.ones_like(flat[:1]), w, padding=1)
    mean = (num / den).view_as(out)
    rem = removed.expand_as(out)
    assert (out - mean)[rem].abs().max().item() < 1e-4


def test_a_removed_object_leaves_no_silhouette():
    """A bright square on a dark background, removed: ROAD fills it with the background (a
    constant fill would leave a square of another colour)."""
    x = torch.full((1, 3, 32, 32), -1.0)
    x[..., 8:24, 8:24] = 2.0
    removed = torch.zeros(32, 32, dtype=torch.bool)
    removed[6:26, 6:26] = True  # the square and a margin of background
    out = road.impute(x, removed, noise=0)
    assert out[..., 8:24, 8:24].max().item() < -1.0 + 1e-2


def test_noise_is_seeded_and_only_on_removed_pixels():
    x, removed = _cases(2)
    a = road.impute(x, removed, generator=torch.Generator().manual_seed(5))
    b = road.impute(x, removed, generator=torch.Generator().manual_seed(5))
    c = road.impute(x, removed, noise=0)
    assert torch.equal(a, b)
    diff = (a - c)
    assert torch.equal(diff[~removed.expand_as(diff)], torch.zeros_like(diff[~removed.expand_as(
        diff)]))
    assert 0.005 < diff[removed.expand_as(diff)].std().item() < 0.02  # ROAD's 0.01


def test_edge_cases_and_errors():
    x = torch.randn(2, 3, 16, 16)
    everything = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    assert torch.equal(road.impute(x, everything, noise=0), torch.zeros_like(x))  # mean colour
    nothing = torch.zeros(16, 16, dtype=torch.bool)
    assert torch.equal(road.impute(x, nothing), x)
    one = road.impute(x[0], nothing | (torch.arange(16) < 3)[:, None], noise=0)  # (C, H, W)
    assert one.shape == (3, 16, 16)
    odd = torch.randn(1, 3, 15, 17)  # sizes the coarse grid cannot halve
    rem = torch.zeros(15, 17, dtype=torch.bool)
    rem[4:11, 2:9] = True
    assert (road.impute(odd, rem, noise=0)[0].double()
            - road.dense_solve(odd[0], rem)).abs().max().item() < 5e-3
    with pytest.raises(AttnvizError, match="mask"):
        road.impute(x, torch.zeros(8, 8, dtype=torch.bool))
    with pytest.raises(AttnvizError, match="NaN"):
        road.impute(torch.full((1, 3, 4, 4), float("nan")), torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(AttnvizError, match="tensor"):
        road.impute(np.zeros((3, 4, 4)), torch.ones(4, 4, dtype=torch.bool))
