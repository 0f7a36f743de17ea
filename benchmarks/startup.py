"""Start-up of a training job: time from `import torch` done to the first training step, and
the process's resident memory there, before -> after, side by side.

Each measurement is a fresh Python process that does what a train job does (import the
runner, read the cached dataset, build the run, evaluate step 0, take the first step).
torch.optim guards `Optimizer.__init__` (`add_param_group`), `zero_grad`, every built-in
`step()` and its functional kernels against torch.compile, and those guards import torch's
compiler stack (`torch._dynamo`, with torch._inductor, sympy, torch.distributed) at their
first call (torch 2.13). "before" is the engine with torch's guards as shipped (the deferral
of nnopt.train.eager_optim switched off: the import happens at the first optimizer);
"after" is the engine as it is (the guards import nothing until something else loads
dynamo); "floor" preloads `torch._dynamo` before the clock starts: the start-up without that
import, whatever the guards do. Modes alternate, so machine load hits all alike; medians
over the repetitions are printed.

    python benchmarks/startup.py [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
DATA = {"name": "mnist1d", "n_samples": 600}
SPEC = {"data": DATA, "model": {"kind": "mlp", "depth": 1, "width": 16},
        "budget": {"epochs": 1, "batch_size": 64}}  # fmt: skip

CHILD = r"""
import json, sys, time
import torch
mode, cache, out, spec_json = sys.argv[1:5]
if mode == "floor":
    import torch._dynamo  # preloaded before the clock starts: what start-up costs without it
after_torch = time.perf_counter()

def rss_mb():
    with open("/proc/self/status") as f:
        line = next(l for l in f if l.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024

first = {}
if mode == "before":
    import nnopt.train.eager_optim as eager_optim
    eager_optim._DONE = True  # torch.optim's guards as shipped: they import torch._dynamo
import nnopt.train.strategy as strategy
step = strategy.train_step
def timed(*args, **kwargs):
    if not first:
        first.update(s=time.perf_counter() - after_torch, rss_mb=rss_mb())
    return step(*args, **kwargs)
strategy.train_step = timed
from nnopt.config.spec import parse_spec
from nnopt.train.runner import run_batch
spec = parse_spec(json.loads(spec_json))
run_batch([{"study": "startup", "spec": spec, "out": out}], threads=1, data_cache=cache)
compiler = "torch._dynamo" in sys.modules
print(json.dumps({**first, "compiler_stack_imported": compiler}))
"""


def _measure(mode: str, cache: str, work: Path, rep: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    out = work / f"{mode}-{rep}"
    cmd = [sys.executable, "-c", CHILD, mode, cache, str(out), json.dumps(SPEC)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(SRC))
    from nnopt.config.spec import parse_spec
    from nnopt.train.data import prepare_dataset

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare_dataset(parse_spec(SPEC).data, work / "cache")
        rows: dict[str, list[dict]] = {"before": [], "after": [], "floor": []}
        for rep in range(args.reps):
            for mode in rows:
                rows[mode].append(_measure(mode, str(work / "cache"), work, rep))
    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("s", "rss_mb")}
           for m, rs in rows.items()}  # fmt: skip
    print(f"time from `import torch` done to the first step, median of {args.reps}; RSS there")
    for mode, row in med.items():
        compiler = rows[mode][0]["compiler_stack_imported"]
        print(f"  {mode:6s}  {row['s']:.3f} s   {row['rss_mb']:.0f} MB   "
              f"compiler stack imported: {compiler}")
    b, a, f = med["before"], med["after"], med["floor"]
    print(f"  after/before: time {a['s'] / b['s']:.2f}x, RSS {a['rss_mb'] - b['rss_mb']:+.0f} MB")
    print(f"  the compiler-stack import (before - floor): {b['s'] - f['s']:.3f} s, "
          f"{b['rss_mb'] - f['rss_mb']:+.0f} MB; after - floor: {a['s'] - f['s']:+.3f} s")


if __name__ == "__main__":
    main()
