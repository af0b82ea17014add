"""`lhl list` reads the registries from the source without importing them: it must name what the
imported registries hold, and the datasets' options as their constructors take them."""
from __future__ import annotations

import subprocess
import sys

import pytest

from lhl.config.resolve import dataset_options
from lhl.core.registry import DATASETS, DISTILLERS, METHODS, TASKS, Registry
from lhl.tools.listing import SAMPLE_ARGS, sections


def own(registry: Registry):
    """The names the package itself registers (tests register extension examples of their own
    into the same process-wide registries)."""
    return [n for n in registry if getattr(registry.get(n), "__module__", "").startswith("lhl.")]


@pytest.mark.parametrize("registry", [TASKS, METHODS, DATASETS, DISTILLERS], ids=lambda r: r.kind)
def test_declared_names_are_the_registered_ones(registry: Registry):
    assert list(registry.declared()) == own(registry)


def test_declared_dataset_options_are_the_constructors():
    for name in own(DATASETS):
        static = [a for a in DATASETS.declared_parameters(name) if a not in SAMPLE_ARGS]
        assert static == dataset_options(DATASETS.get(name)), name


def test_lhl_list_names_every_method_and_imports_no_torch():
    assert "had" in sections()["methods (method.name=, or method= without a preset)"][0]
    code = "import sys; from lhl.cli import main; main(['list']); main(['list']); print(sorted(m for m in ('torch', 'lightning', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
