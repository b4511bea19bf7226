"""``attnviz stats``: the CLI runs a real model over synthetic images and writes the CSV tables,
figures and stats.json; bad input gets a clear message."""
import csv
import json

import pytest

from attnviz.cli import main


@pytest.mark.slow
def test_stats_cli_writes_tables_and_figures(tmp_path, capsys):
    out = tmp_path / "st"
    assert main(["stats", "synthetic", "--model", "lite_sk", "--n", "24", "--batch-size", "12",
                 "--out", str(out), "--quiet"]) == 0
    r = json.loads((out / "stats.json").read_text())
    assert r["n"] == 24 and len(r["kernel"]) == 4
    with open(out / "kernel_vs_scale.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["layer", "image", "object_px", "large_kernel_weight"]
    assert len(rows) == 1 + 4 * 24
    assert (out / "kernel_vs_scale.png").stat().st_size > 1000
    assert (out / "kernel_vs_scale.html").is_file() and (out / "plotly.min.js").is_file()
    assert "per 10 px" in capsys.readouterr().out


def test_stats_cli_refuses_bad_input(tmp_path, capsys):
    assert main(["stats", "synthetic", "--model", "lite_se", "--n", "1", "--out",
                 str(tmp_path / "x"), "--quiet", "--random"]) == 2
    assert "--n must be between" in capsys.readouterr().err
    assert main(["stats", str(tmp_path / "missing"), "--model", "lite_se", "--out",
                 str(tmp_path / "x"), "--quiet", "--random"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
