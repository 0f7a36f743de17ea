"""Upper bounds of what a run may ask for: sizes (overridable) and seeds (not).

A typo of a few zeros (`model.width: 10000000`, `data.n_samples: 10**9`) would otherwise
exhaust the machine inside a job; the spec parser (`nnopt.config.spec`) and the landscape
settings check every such integer here, naming the limit and the override in one line.
No imports at module level beyond the standard library (`spec` imports this module).
"""

from __future__ import annotations

from nnopt.config.errors import SpecError

import functools
import os

__all__ = ["LIMITS", "LIMITS_ENV", "MAX_SEED", "MAX_SPLIT_SEED", "size_limit", "check_size"]

# Upper bounds of the sizes the engine allocates or loops over. They stop `width: 10000000`
# from swapping a workstation to death; a user who truly means a bigger value raises one
# with NNOPT_LIMITS="model.width=100000,data.n_samples=5000000" (config/README.md, Limits).
LIMITS: dict[str, int] = {
    "config.runs": 20_000,  # all studies of a config (problems included); the shipped: ~800
    "data.n_samples": 1_000_000,
    "data.n_classes": 1_000,
    "data.n_features": 10_000,
    "model.depth": 64,
    "model.width": 16_384,
    "model.kernel_size": 255,
    "budget.epochs": 100_000,
    "budget.steps": 10_000_000,
    "budget.batch_size": 1_000_000,
    "evaluation.max_train_eval_samples": 10_000_000,
    "device.threads": 1_024,
    "device.world_size": 1_024,
    "tune.trials": 10_000,  # per configuration (trials_by_config too)
    "tune.confirm_seeds": 1_000,
    "tune.batch": 1_024,
    "tune.shards": 1_024,  # training jobs per round
    "landscape.grid_points": 201,  # per axis: 201**2 = 40401 loss evaluations per plane
    "landscape.alpha_points": 10_001,
    "landscape.train_samples": 1_000_000,
    "landscape.val_samples": 1_000_000,
    "landscape.hessian_iters": 10_000,
    "landscape.chunk_size": 1_000_000,
}
LIMITS_ENV = "NNOPT_LIMITS"
# torch.manual_seed takes up to 2**64 - 1, but seeds land in Int64 tables (runs.parquet):
# 2**63 - 1 is the largest seed every layer holds. Not a size: no override.
MAX_SEED = 2**63 - 1
# numpy's legacy seeding (mnist1d's generator calls np.random.seed) takes < 2**32.
MAX_SPLIT_SEED = 2**32 - 1


@functools.lru_cache(maxsize=8)
def _overrides(text: str) -> dict[str, int]:
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in LIMITS:
            from nnopt.config.errors import did_you_mean

            raise SpecError(
                f"{LIMITS_ENV}: unknown limit {key!r}; allowed: {', '.join(LIMITS)}"
                + did_you_mean(key, LIMITS)
            )
        if not eq or not value.strip().isdigit() or int(value) < 1:

            raise SpecError(f"{LIMITS_ENV}: {item!r} must be KEY=N with an integer N >= 1")
        out[key] = int(value)
    return out


def size_limit(key: str) -> int:
    """The upper bound of size `key` (LIMITS, raised or lowered through NNOPT_LIMITS)."""
    return _overrides(os.environ.get(LIMITS_ENV, "")).get(key, LIMITS[key])


def check_size(path: str, value: int | None, key: str | None = None) -> None:
    """SpecError when `value` is above the limit `key` (default: `path`), naming the override."""
    key = key or path
    if value is None or key not in LIMITS or value <= (limit := size_limit(key)):
        return

    raise SpecError(
        f"{path}: {value} is above the limit {limit}; allowed: at most {limit} (if you truly "
        f"mean it, set {LIMITS_ENV}={key}={value})"
    )
