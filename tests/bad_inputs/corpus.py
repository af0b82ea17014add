"""Run the bad-input corpus (cases.json, made by make_corpus.py): each case on a copy of its
source's tiny base set, through what `lhl run` does before training (config, task specs, the data
module's `prepare_data` with its preflight checks).

    python tests/bad_inputs/corpus.py            # a markdown table: source, case, the error's first line
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = json.loads((HERE / "cases.json").read_text())
SYNTHETIC_OPTIONS = "{n_train: 3, n_val: 2, height: 8, width: 8, seed: 0}"


def materialise(case: dict, where: Path) -> Path:
    """The case's data folder: the base set with the case's files put over it and its deletions made."""
    data = where / "data"
    shutil.copytree(HERE / "base" / case["source"], data)
    for rel in case["files"]:
        shutil.copyfile(HERE / "cases" / case["source"] / case["case"] / rel, data / rel)
    for rel in case["delete"]:
        p = data / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return data


def run_case(case: dict, where: Path):
    """The exception the case raises before training (None: it passed, which is a failure)."""
    from lhl.config import load_config
    from lhl.data.datamodule import LifelongDataModule
    from lhl.engine.build import build_specs

    data = materialise(case, where)
    overrides = [f"seq={case['seq']}", f"data.root={data}", f"run.out_dir={where / 'runs'}", *case["overrides"]]
    if case["source"] == "synthetic":
        overrides.append(f"data.options={SYNTHETIC_OPTIONS}")
    try:
        cfg = load_config([], overrides)
        LifelongDataModule(cfg.data, build_specs(cfg)).prepare_data()
    except Exception as err:  # noqa: BLE001 - every kind of error is what is being collected
        return err
    return None


def first_line(err) -> str:
    return "(no error)" if err is None else f"{type(err).__name__}: " + str(err).splitlines()[0]


def main() -> int:
    print("| source | case | error (first line; paths shortened) |\n|---|---|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            err = run_case(case, Path(tmp))
            line = first_line(err).replace(str(Path(tmp) / "data") + "/", "").replace(str(Path(tmp)), "<tmp>")
        for raw, md in (("|", "/"), ("<", "&lt;"), (">", "&gt;"), ("*", "\\*")):  # a markdown table cell
            line = line.replace(raw, md)
        print(f"| {case['source']} | {case['case']} | {line} |")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
