"""Cost of the loss-term diagnostics (`diag.every`) per measured step, for docs/benchmarks/had-diagnosis.md.

synthetic_small_s1's network (resnet18, output stride 8, heads 64 wide, ASPP 1/2/3), batch 16 at
64x80, phase 3 of semantic -> depth -> normal (two old tasks), the real LifelongModule.training_step
+ backward + Adam, 1 thread; median of 15 steps each, with and without the diagnostics, interleaved.

    OMP_NUM_THREADS=1 python docs/benchmarks/had_diagnosis_cost.py [had|lwf]   (a registered method, at its default options)
"""
import statistics, sys, time, warnings
import torch
from omegaconf import OmegaConf
from lhl.config import Config
from lhl.data.protocol import Phase
from lhl.engine.lifelong_module import LifelongModule
from lhl.methods import METHODS
from lhl.models import MultiHeadPredictor
from lhl.models.frozen import freeze_copy
from lhl.tasks import build_task

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
method_name = sys.argv[1] if len(sys.argv) > 1 else "had"
tasks = [("semantic", "semantic", 13), ("depth", "depth", 1), ("normal", "normal", 3)]
g = torch.Generator().manual_seed(0)
batch = {"image": torch.rand(16, 3, 64, 80, generator=g)}
for n, k, c in tasks:
    batch[n] = build_task(k, n, c).example_label(16, 64, 80, g)

def module(diag):
    torch.manual_seed(0)
    net = MultiHeadPredictor(backbone="resnet18", head_width=64, aspp_rates=(1, 2, 3))
    specs = {n: build_task(k, n, c) for n, k, c in tasks}
    for s in specs.values():
        net.add_head(s)
    cls = METHODS.get(method_name)
    m = LifelongModule(net, cls(cls.Options(), specs), Phase(2, ("normal",), ("semantic", "depth"), ("normal",), slice=0),
                       OmegaConf.structured(Config).train, diag_every=diag)
    m.set_teacher(freeze_copy(net, ["semantic", "depth"]))
    return m

def times(m, steps=15, warm=3):
    """(wall, CPU) seconds of each step: the process's CPU time is the steadier of the two on a
    machine that other jobs share (one thread: CPU time = the step's own work)."""
    opt = torch.optim.Adam(m.network.parameters(), lr=1e-3)
    out = []
    for i in range(warm + steps):
        t, c = time.perf_counter(), time.process_time()
        loss = m.training_step(batch, 0)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        out.append((time.perf_counter() - t, time.process_time() - c))
    return out[warm:]

off, on = module(None), module(1)
a, b = [], []
for _ in range(3):  # interleaved, so that a load change on the machine hits both
    a += times(off, 5, 1); b += times(on, 5, 1)
for i, kind in ((1, "CPU time"), (0, "wall time")):
    ma, mb = (statistics.median(x[i] for x in v) * 1e3 for v in (a, b))
    print(f"{method_name}, {kind}: step without diagnostics {ma:.0f} ms, with them {mb:.0f} ms: "
          f"+{mb - ma:.0f} ms (x{mb / ma:.2f}) per measured step, 1 thread, median of {len(a)} steps")
