"""`lhl dev ...`: the developers' measurements, out of the user's command list: training-step
throughput (`bench`), a whole sequence timed as lhl runs it and as the release does (`bench-e2e`),
the release and lhl side by side (`release-parity`), one distiller across seed sweeps
(`distill-study`), the fault campaign (`chaos`). The orchestration code lives in `lhl.tools` and `lhl.distill`."""
from __future__ import annotations

from typing import List

from lhl.cli.common import dispatch

USAGE = """usage: lhl dev <measurement> [options]    (lhl dev <measurement> --help: its options)

measurements:
  bench [--out FILE] [...]                    training-step throughput of finetune / LwF / HAD
  bench-e2e [--seq S --method M] [k=v]        a whole sequence timed as lhl runs it and as the release does
  release-parity --release LOG.. --lhl RUN..  the HAD release and lhl side by side (final metrics per seed)
  distill-study NAME.. [--ref NAME]           one distiller's row across `lhl distill --seeds` sweeps, paired
  chaos [--faults N --seed S]                 the fault campaign: a tiny run killed at random moments, resumed, compared

`lhl bench`, `lhl bench-e2e`, `lhl release-parity` and `lhl distill-study` are the same commands.
"""

MEASUREMENTS = {
    "bench": "lhl.tools.bench:cli",
    "bench-e2e": "lhl.tools.bench_e2e:cli",
    "release-parity": "lhl.tools.release_parity:cli",
    "distill-study": "lhl.distill.study:cli",
    "chaos": "lhl.tools.chaos:cli",
}


def cli(argv: List[str]) -> int:
    return dispatch("dev", MEASUREMENTS, USAGE, argv)
