"""`worldfm model info`: the printed figures are the model's own counts."""

from __future__ import annotations

import re

import pytest

from models.dit import build_model, flops_per_step, get_config
from python_bridge.cli import main


@pytest.mark.parametrize("name", ["tiny", "demo", "xl"])
def test_model_info_prints_the_configs_counts(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", name]) == 0
    out = capsys.readouterr().out
    config = get_config(name)
    params = sum(p.numel() for p in build_model(config, device="meta").parameters())
    assert re.search(rf"parameters\s+{params:,}\b", out)
    assert re.search(rf"tokens\s+{config.tokens}\b", out)
    assert f"{flops_per_step(config) / 1e9:.3f} G" in out


def test_model_info_rejects_unknown_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", "huge"]) == 1
    assert "unknown config 'huge'" in capsys.readouterr().err
