"""Ray is an optional extra: without it, ``--executor ray`` says how to install it
in one line (runs whether or not Ray is installed: the import is made to fail)."""
import builtins

import pytest
import yaml
from click.testing import CliRunner

from curate.basics.errors import CurateError
from curate.pipeline.runner import make_executor


def test_without_ray_executor_ray_says_how_to_install(monkeypatch, tmp_path, shared):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(CurateError, match=r"pip install 'curate\[ray\]'"):
        make_executor("ray")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"inputs": [str(shared / "data/pretrain/c4_demo.jsonl")],
                                      "output": {"dir": str(tmp_path / "out")}}))
    from curate.cli import cli

    result = CliRunner().invoke(cli, ["run", str(config), "--executor", "ray", "--quiet"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'curate[ray]'" in lines[0], result.output
