"""Across processes: torchrun with 2 gloo processes on the CPU scores the images of one
evaluation between them and merges into exactly what one process computes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import attnviz
from attnviz.scores.evaluate import evaluate
from attnviz.data.shard import Shard

pytestmark = pytest.mark.slow  # runs torchrun

ROOT = Path(__file__).resolve().parent.parent


def test_shares_cover_the_items_once_in_order():
    items = list(range(11))
    for world in (1, 2, 3, 4):
        parts = [Shard(r, world).take(items) for r in range(world)]
        assert [i for p in parts for i in p] == items
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "two.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "attnviz.evaluate", "--model", "lite_cbam", "--images", "23", "--batch-size", "5",
         "--faithfulness", "4", "--steps", "4", "--sanity", "0", "--device", "cpu",
         "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(out.read_text())
    assert two["processes"] == 2
    assert proc.stdout.count("top-1 accuracy") == 1  # only the first process reports
    one = evaluate(attnviz.create_model("lite_cbam", pretrained=True), n=23, batch_size=5,
                   faithfulness=4, steps=4)
    for r in (one, two):
        r.pop("seconds")
        r.pop("processes", None)
    assert two == one
    assert one["masked_images"] == 23 and one["attention"] and one["faithfulness"]
