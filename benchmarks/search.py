"""Successive halving (ASHA's promotion rule) vs full random search at equal trial count.

Both searches draw the same k trial configurations (the same seeded random sampler) for
AdamW on MNIST-1D (MLP 2×64): learning rate and weight decay, log-uniform. Random search
trains every trial for the full budget; successive halving trains all k for min_epochs, the
best 1/eta for eta× longer, ..., up to max_epochs (each rung retrained from scratch).
Both run in this process through the engine (`nnopt.search.run_search` with
`nnopt.train.runner.run_batch`), each into its own empty run folder (no shared cache), one
after the other.

Acceptance (issue "Search"): the halving search's best full-budget validation accuracy is
within 1 point of random search's best, with <= 1/3 of its compute (epochs trained; the
training + evaluation seconds and the CPU seconds of training are printed too; time is
noisier than epochs on a shared machine, and a short run's fixed costs, e.g. the initial
evaluation, weigh more in the halving search's many short runs).

    python benchmarks/search.py                    # k=32, rungs 2/8/16 epochs: ~3 min on one core
    python benchmarks/search.py --trials 16 --max-epochs 8 --min-epochs 2   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _config(args: argparse.Namespace, asha: bool):
    from nnopt.config.studies import parse_config

    tune = {
        "params": {"optimizer.lr": {"log_uniform": [1.0e-4, 0.3]},
                   "regularization.weight_decay": {"log_uniform": [1.0e-5, 0.1]}},
        "trials": args.trials, "sampler": "random", "seed": args.seed,
        "select": "best_val_accuracy", "seeds": [0], "confirm_seeds": 1,
    }  # fmt: skip
    if asha:
        tune["asha"] = {"eta": args.eta, "min_epochs": args.min_epochs, "max_epochs": args.max_epochs}
    base = {
        "data": {"name": "mnist1d"}, "model": {"kind": "mlp", "depth": 2, "width": 64},
        "optimizer": {"name": "adamw"}, "budget": {"epochs": args.max_epochs, "batch_size": 64},
        "device": {"threads": 1},
    }  # fmt: skip
    raw = {"studies": [{"name": "bench", "base": base, "tune": tune}]}
    return parse_config(raw).studies[0]


def _search(study, folder: Path, data_cache: Path) -> dict:
    from nnopt.search.driver import run_search
    from nnopt.search.rounds import best_trials, read_round, trial_round_count
    from nnopt.store.runs import read_run
    from nnopt.train.runner import run_batch

    cpu_s = [0.0]

    def train(items):
        t0 = time.process_time()  # CPU seconds: steadier than wall time on a shared machine
        run_batch([{**i, "spec": _spec(i["spec"])} for i in items], data_cache=data_cache)
        cpu_s[0] += time.process_time() - t0

    n = trial_round_count(study)
    t0 = time.perf_counter()
    run_search(study, folder / "search", folder / "runs", train, stop_after_round=n - 1)
    wall_s = time.perf_counter() - t0
    items = [i for r in range(n) for i in read_round(folder / "search", "bench", r)["runs"]]
    records = [read_run(i["out"]) for i in items]
    best = best_trials(study, [read_round(folder / "search", "bench", r) for r in range(n)])[0]
    return {
        "best_val_accuracy": best[2], "values": best[1], "runs": len(items),
        "epochs": sum(r["metrics"]["epochs"] or 0 for r in records),
        "compute_s": sum((r["metrics"]["train_time_s"] or 0) + (r["metrics"]["eval_time_s"] or 0)
                         for r in records),
        "wall_s": wall_s, "cpu_s": cpu_s[0],
    }  # fmt: skip


def _spec(tree):
    from nnopt.config.spec import parse_spec

    return parse_spec(tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--eta", type=int, default=4)
    parser.add_argument("--min-epochs", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument("--data-cache", default=None, help="prepared-dataset cache folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nnopt-search-bench-") as tmp:
        cache = Path(args.data_cache or Path(tmp) / "data")
        rand = _search(_config(args, asha=False), Path(tmp) / "random", cache)
        halving = _search(_config(args, asha=True), Path(tmp) / "halving", cache)
    budgets = _config(args, asha=True).tune.asha.budgets
    gap = 100 * (rand["best_val_accuracy"] - halving["best_val_accuracy"])
    ratio = halving["epochs"] / rand["epochs"]
    seconds = halving["cpu_s"] / rand["cpu_s"]
    for name, r in (("random search", rand), (f"halving {list(budgets)}", halving)):
        print(f"{name:22s} best val acc {100 * r['best_val_accuracy']:.1f} %  runs {r['runs']:3d}  "
              f"epochs {r['epochs']:5.0f}  train+eval {r['compute_s']:6.1f} s  CPU {r['cpu_s']:6.1f} s  "
              f"wall {r['wall_s']:6.1f} s  "
              f"chosen {json.dumps({k: round(v, 6) for k, v in r['values'].items()})}")  # fmt: skip
    print(f"gap {gap:+.1f} points (target <= 1.0); compute ratio halving/random: epochs {ratio:.3f} "
          f"(target <= 0.333), CPU seconds {seconds:.3f}")
    ok = gap <= 1.0 and ratio <= 1 / 3
    print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
