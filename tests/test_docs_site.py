"""The documentation site builds with --strict (a broken link, a page missing from the nav or an
unresolved API reference fails), its generated references hold what the code holds, and neither the
site nor the README carries lab-notebook material."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
needs_mkdocs = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mkdocs", "material", "mkdocstrings_handlers")),
    reason="the docs extra is not installed (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out


def page(site: Path, path: str) -> str:
    return (site / path / "index.html").read_text(encoding="utf-8")


@needs_mkdocs
def test_the_site_builds_strict_with_every_section(site):
    for path in ("getting-started", "concepts/metrics", "guides/scaling", "methods/had", "how-to/nyuv2-slurm",
                 "tutorials/add-a-method", "benchmarks/synthetic-s1", "contributing/extending", "reference/api"):
        assert (site / path / "index.html").is_file(), path


@needs_mkdocs
def test_the_config_reference_has_every_schema_key(site):
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    import schema_table

    html = page(site, "reference/config")
    keys = [k for k, *_ in schema_table.rows(ROOT / "src/lhl/config/schema.py", "Config")]
    assert {"run.seeds", "train.lr_schedule", "train.teacher_pass", "model.upgrade_to"} <= set(keys)
    missing = [k for k in keys if f"<code>{k}</code>" not in html]
    assert missing == []


@needs_mkdocs
def test_the_cli_reference_has_every_command_and_the_presets(site):
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    import cli_help

    usage = subprocess.run([sys.executable, "-m", "lhl", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    names = cli_help.commands(usage)
    assert {"run", "compare", "paper", "distill", "slurm", "data synth"} <= set(names)
    html = page(site, "reference/cli")
    for name in names:
        assert f"lhl {name}</code>" in html, name
    assert "had_faithful" in page(site, "reference/presets") and "SEEDS" in page(site, "reference/makefile")


@needs_mkdocs
def test_the_api_reference_renders_the_extension_points(site):
    html = page(site, "reference/api")
    for name in ("Method", "loss_terms", "PseudoLabelDistillation", "TaskSpec", "had_loss", "Registry"):
        assert name in html, name


def test_no_lab_notebook_in_the_docs_and_readme():
    """No citations of files outside the repository, issue numbers or one-off patches."""
    bad = re.compile(r"\.\./shared|DESIGN\.md|issue \d+|issue_\d+|local patch|not in lhl\)", re.I)
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    hits = [f"{f.relative_to(ROOT)}:{i}: {line.strip()}" for f in files
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if bad.search(line)]
    assert hits == []


def test_the_readme_links_resolve_in_the_repository():
    """The README is read on GitHub and PyPI, outside the site: its relative links name real files."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {m.split("#")[0] for m in re.findall(r"\]\(([^)]+)\)", text) if "://" not in m}
    assert sorted(t for t in targets if t and not (ROOT / t).exists()) == []


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
