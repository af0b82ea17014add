"""What a run was made on: `lhl.core.machine`, recorded in results.json, shown by results.md,
`lhl report` and `lhl compare` (which warns when a table's runs came from different setups)."""
import torch

from lhl.core import machine
from lhl.core.machine import cpu_name, device_name, machine_info, machine_label
from lhl.reporting.aggregate import compare
from lhl.reporting.render import machines_note, render_markdown
from lhl.runs.results import Results
from lhl.tasks.depth import DepthTask

AVX2 = {"device": "CPU A", "cpu_capability": "AVX2", "threads": 1, "torch": "2.14.1"}
AVX512 = {"device": "CPU B", "cpu_capability": "AVX512", "threads": 1, "torch": "2.14.1"}


def _run(seed, err, machines=()):
    r = Results.from_specs([DepthTask("depth", 1)], dataset="synthetic", sequence="s", method="m", seed=seed)
    r.add_phase(0, "depth", {"depth": {"abs_err": err, "rel_err": err / 3}})
    for m in machines:
        r.note_machine(m)
    return r


def test_machine_info_reads_this_process():
    info = machine_info("cpu", threads=3)
    assert info == {"device": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "threads": 3, "torch": torch.__version__}
    assert machine_info()["threads"] == torch.get_num_threads()
    assert machine_label(info) == f"{cpu_name()} ({info['cpu_capability']}), 3 thread(s), torch {torch.__version__}"


def test_cpu_name_from_cpuinfo_else_platform(tmp_path, monkeypatch):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Some CPU @ 2.0GHz\nflags\t: avx2\n")
    monkeypatch.setattr(machine, "CPUINFO", f)
    assert cpu_name() == "Some CPU @ 2.0GHz" == device_name("cpu")
    monkeypatch.setattr(machine, "CPUINFO", tmp_path / "absent")
    monkeypatch.setattr(machine.platform, "processor", lambda: "")
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    assert cpu_name() == "x86_64"


def test_results_note_each_machine_once_and_render_it(tmp_path):
    r = _run(0, 0.5, [AVX2, AVX2])
    assert r.machines == [AVX2]  # the same machine after every phase: one entry
    r.note_machine(AVX512)  # resumed elsewhere
    assert r.machines == [AVX2, AVX512]
    r.save(tmp_path)
    assert Results.load(tmp_path).machines == [AVX2, AVX512]
    md = render_markdown(Results.load(tmp_path))
    assert "Made on: CPU A (AVX2), 1 thread(s), torch 2.14.1; CPU B (AVX512), 1 thread(s), torch 2.14.1" in md
    assert "Made on" not in render_markdown(_run(0, 0.5))  # an older run records none


def test_machines_note_one_several_unknown():
    assert machines_note([[AVX2], [AVX2]]) == ["Made on: CPU A (AVX2), 1 thread(s), torch 2.14.1.", ""]
    several = machines_note([[AVX2], [AVX512], None])
    assert several[0].startswith("Made on 2 machine setups: CPU A (AVX2)") and "differ in rounding" in several[0]
    assert several[1] == "1 run(s) of 3 did not record their machine (made before lhl noted it)."
    assert machines_note([None, []]) == ["2 run(s) of 2 did not record their machine (made before lhl noted it).", ""]
    assert machines_note([]) == []


def test_compare_counts_each_run_once_and_warns_on_mixed_machines(tmp_path):
    dirs = {}
    for method, errs, m in (("a", (0.5, 0.6), AVX2), ("b", (0.4, 0.45), AVX512)):
        dirs[method] = []
        for seed, err in enumerate(errs):
            d = tmp_path / f"{method}{seed}"
            _run(seed, err, [m]).save(d)
            dirs[method].append(d)
    md, obj = compare(dirs, ref="a")  # the reference is one of the methods: its runs count once
    assert obj.machines == [[AVX2], [AVX2], [AVX512], [AVX512]]
    assert "Made on 2 machine setups" in md
    md_one, obj_one = compare({"a": dirs["a"]}, ref=dirs["a"])
    assert obj_one.machines == [[AVX2], [AVX2]] and "Made on: CPU A (AVX2)" in md_one
