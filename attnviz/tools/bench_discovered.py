"""Benchmark of discovery: capture overhead on 224 px models whose attention attnviz did not
write (found by :func:`attnviz.discover`, no taps). ``python -m attnviz.bench`` prints it; run
alone with ``python -m attnviz.tools.bench_discovered [--device cuda]``."""
from __future__ import annotations

import argparse

import torch

from .. import create_model
from ..capture.recorder import capture
from ..capture.discover.discovery import discover
from .timing import paired


class _PaperSE(torch.nn.Module):
    """SE as the paper's code writes it (an nn.Sigmoid child: discovered, hooked as a module)."""

    def __init__(self, c, r=16):
        super().__init__()
        self.avg_pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Sequential(torch.nn.Linear(c, c // r, bias=False),
                                      torch.nn.ReLU(inplace=True),
                                      torch.nn.Linear(c // r, c, bias=False), torch.nn.Sigmoid())

    def forward(self, x):
        b, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)


class _PaperSpatialGate(torch.nn.Module):
    """CBAM's spatial gate as the paper's code writes it (F.sigmoid: discovered as a call)."""

    def __init__(self):
        super().__init__()
        self.spatial = torch.nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x):
        pooled = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), 1)
        return x * torch.nn.functional.sigmoid(self.spatial(pooled))


def discovered_resnet50(gate: str = "se") -> torch.nn.Module:
    """ResNet-50 with a paper-form gate after every bottleneck's last BN: attention attnviz did
    not write, found by discovery (no taps)."""
    model = create_model("resnet50")
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            c = block.bn3.num_features
            block.bn3 = torch.nn.Sequential(block.bn3, _PaperSE(c) if gate == "se"
                                            else _PaperSpatialGate())
    return model.eval()


def bench_discovered(device, reps):
    """Capture overhead on 224 px models whose attention is discovered, not tapped: the SE form
    (16 forward hooks on nn.Sigmoid children) and the CBAM spatial form (a function mode while
    each gate runs). The probe is run (and cached) before timing."""
    out = {}
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    for gate in ("se", "cbam_spatial"):
        model = discovered_resnet50(gate).to(device)
        found = discover(model)

        def plain(model=model):
            with torch.no_grad():
                model(x)

        def captured(model=model, found=found):
            with torch.no_grad(), capture(model) as rec:
                model(x)
            if len(rec.maps) != len(found):
                raise RuntimeError(f"captured {len(rec.maps)} maps of {len(found)} discovered")

        t_plain, t_cap = paired(plain, captured, reps, device)
        out[f"{gate}_resnet50"] = {"capture_overhead": round(t_cap / t_plain, 3),
                                   "forward_ms": round(t_plain * 1e3, 1), "maps": len(found)}
    return out


def line(d: dict) -> str:
    """The bench table's line for :func:`bench_discovered`'s result."""
    return "capture/fwd on discovered (not tapped) 224 px models: " + ", ".join(
        f"{k} {v['capture_overhead']:.3f} ({v['maps']} maps, fwd {v['forward_ms']:.0f} ms)"
        for k, v in d.items())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m attnviz.bench_discovered")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--reps", type=int, default=7)
    a = p.parse_args(argv)
    print(line(bench_discovered(torch.device(a.device), a.reps)))


if __name__ == "__main__":
    main()
