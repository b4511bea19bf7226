"""One hook lifecycle (attnviz.capture.hooks.Hooks) for capture, discovered sites and the probe,
and nothing installed in torch by importing attnviz."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import attnviz
from attnviz.capture.hooks import Hooks
from attnviz.capture.recorder import hook_count
from attnviz.capture.structure import hook_points, structure
from attnviz.models.layers import SEModule

ROOT = Path(__file__).resolve().parents[1]

GLOBAL_DICTS = ("_global_module_registration_hooks", "_global_forward_hooks",
                "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks", "_global_buffer_registration_hooks",
                "_global_parameter_registration_hooks", "_global_forward_hooks_always_called")


@pytest.mark.slow  # over ~2 s: the full tier (the fast tier stays under 2 min)
def test_importing_attnviz_installs_no_torch_hook():
    code = f"""
import json, torch.nn.modules.module as M
names = {GLOBAL_DICTS!r}
size = lambda: {{n: len(getattr(M, n, {{}})) for n in names}}
before = size()
import attnviz, attnviz.capture, attnviz.render, attnviz.cli, attnviz.tools.bench
print(json.dumps([before, size()]))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == after
    assert set(before) >= {"_global_module_registration_hooks", "_global_forward_hooks"}


def test_the_lifecycle_removes_its_hooks_and_restores_modes_after_an_error():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(), nn.Linear(3, 1))
    model.train()
    model[1].eval()  # one part frozen in eval mode
    calls = []
    with pytest.raises(RuntimeError, match="boom"):
        with Hooks(model) as hooks:
            hooks.forward(model[0], lambda m, a, o: calls.append("fwd"))
            hooks.forward_pre(model[2], lambda m, a: calls.append("pre"))
            assert hook_count(model) == 2
            model.eval()
            model(torch.zeros(1, 3))
            raise RuntimeError("boom")
    assert calls == ["fwd", "pre"]
    assert hook_count(model) == 0
    assert model.training and model[0].training and not model[1].training


def test_a_failure_while_attaching_removes_what_was_attached():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))

    class Failing(Hooks):
        def attach(self):
            self.forward(self.model[0], lambda *a: None)
            raise ValueError("cannot attach")

    with pytest.raises(ValueError):
        with Failing(model):
            pass
    assert hook_count(model) == 0


def test_a_replaced_block_is_found_without_any_global_hook():
    model = attnviz.create_model("lite_se")
    first = structure(model)
    assert structure(model) is first  # cached while the model keeps its modules
    path, old = next((n, m) for n, m in model.named_modules() if isinstance(m, SEModule))
    parent_path, _, attr = path.rpartition(".")
    new = SEModule(old.fc1.in_channels)
    setattr(model.get_submodule(parent_path), attr, new)
    again = structure(model)
    assert again is not first and len(again.modules) == len(first.modules)  # one replaced
    assert dict(hook_points(model))[f"{path}.gate_tap"] is new.gate_tap
    with attnviz.capture(model) as rec:
        model(torch.randn(1, 3, 64, 64))
    assert f"{path}.gate_tap" in {m.tap for m in rec.maps} and hook_count(model) == 0
