"""The examples in the public docstrings run and print what they claim."""

import doctest
import importlib
import os
import re

import pytest

MODULES = ["sparse_mlp", "sparse_mlp.model", "sparse_mlp.recycling", "sparse_mlp.activations",
           "sparse_mlp.datasets", "sparse_mlp.metrics", "sparse_mlp.estimator"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


GUIDE = os.path.join(os.path.dirname(__file__), "..", "docs", "guide.md")


def test_the_guide_runs(tmp_path, monkeypatch, madelon_dir):
    """Runs every Python block of docs/guide.md in order, from a folder that
    sits next to ``shared/data`` as the guide assumes."""
    shared = os.path.dirname(os.path.dirname(os.path.abspath(madelon_dir)))
    os.symlink(shared, tmp_path / "shared")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    with open(GUIDE) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert len(blocks) >= 10
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/guide.md block {i + 1}", "exec"), namespace)
    assert namespace["again"].epochs_trained == 4
    assert namespace["rebuilt"].sizes == namespace["model"].sizes
    assert os.path.exists("figures/input_connectivity.png")
