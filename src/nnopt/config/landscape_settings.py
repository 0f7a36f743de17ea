"""Settings of a loss landscape (config key `landscape:` at the top level; every field
optional): the grid, the Hessian method and the budget. Parsed at config time, so they live
here and not in the torch-side `nnopt.landscape` package (which imports them from here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from nnopt.config.limits import MAX_SEED, check_size
from nnopt.config.spec import SpecError, did_you_mean

__all__ = ["LandscapeSettings", "parse_settings", "HESSIAN_METHOD_NAMES"]


@dataclass(frozen=True)
class LandscapeSettings:
    """Grid and budget of one landscape. Defaults take well under a minute per small MLP."""

    alpha_min: float = -0.5  # 1-D interpolation θ(α) = (1-α)·θ_init + α·θ_final
    alpha_max: float = 1.5
    alpha_points: int = 41
    grid_points: int = 21  # per axis of each 2-D plane
    grid_range: float = 1.0  # random plane: x, y in [-r, r] (filter-normalized units)
    pca_margin: float = 0.25  # pca plane: trajectory extent widened by this fraction
    # First N training samples (a prefix of the engine's; the prepared splits are shuffled).
    # 512: the surfaces' and the Hessian's cost halves against 1024; the contours are the same.
    train_samples: int = 512
    val_samples: int | None = None  # None: the whole validation split
    hessian_method: str = "lobpcg"  # or "power" (the slow reference)
    hessian_iters: int = 50  # steps (Hessian-vector products) per end of the spectrum
    hessian_tol: float = 1e-3
    direction_seed: int = 0
    rows_per_batch: int = 4  # 2-D grid rows per resumable part file
    chunk_size: int = 2048  # samples per forward pass
    # Points per batched pass (nnopt.landscape.batched); 1, the default: one at a time. On a
    # CPU the shipped models' evaluation is matmul-bound, and vmap measured 0.4-1.0x.
    points_per_pass: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def key(self) -> str:
        """Hash of the settings that change results (not the batching)."""
        batching = ("rows_per_batch", "points_per_pass")
        d = {k: v for k, v in self.to_dict().items() if k not in batching}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


_POSITIVE_INT = (
    "alpha_points",
    "grid_points",
    "train_samples",
    "hessian_iters",
    "rows_per_batch",
    "chunk_size",
    "points_per_pass",
)


HESSIAN_METHOD_NAMES = ("lobpcg", "power")  # keys of nnopt.landscape.surface.HESSIAN_METHODS


def _check_field(path: str, name: str, value: Any, default: Any) -> Any:
    if name == "hessian_method":
        if value not in HESSIAN_METHOD_NAMES:
            raise SpecError(
                f"{path}.{name}: unknown value {value!r}; allowed: "
                + ", ".join(HESSIAN_METHOD_NAMES)
                + did_you_mean(value, HESSIAN_METHOD_NAMES)
            )
        return value
    if name == "val_samples" and value is None:
        return None
    want_int = isinstance(default, int) or name == "val_samples"
    ok = isinstance(value, int) if want_int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        kind = "an integer" if want_int else "a number"
        raise SpecError(f"{path}.{name}: expected {kind}, got {value!r}")
    positive = name in _POSITIVE_INT or name in ("val_samples", "grid_range", "hessian_tol")
    if (positive and value <= 0) or (name == "pca_margin" and value < 0):
        raise SpecError(f"{path}.{name}: {value!r} is out of range; expected > 0")
    if name in ("alpha_points", "grid_points") and value < 2:
        raise SpecError(f"{path}.{name}: expected an integer >= 2, got {value!r}")
    if name == "direction_seed" and not 0 <= value <= MAX_SEED:
        raise SpecError(f"{path}.{name}: {value!r} is out of range; expected 0 to {MAX_SEED}")
    if want_int:
        check_size(f"{path}.{name}", value, key=f"landscape.{name}")
    return value if want_int else float(value)


def parse_settings(raw: Mapping[str, Any] | None, path: str = "landscape") -> LandscapeSettings:
    """Validate a (partial) settings mapping; unknown keys and bad values raise SpecError."""
    if raw is None:
        return LandscapeSettings()
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path}: expected a mapping of landscape settings")
    defaults = LandscapeSettings()
    names = [f.name for f in fields(LandscapeSettings)]
    values = {}
    for key, value in raw.items():
        if key not in names:
            raise SpecError(
                f"{path}.{key}: unknown key; allowed: {', '.join(names)}" + did_you_mean(key, names)
            )
        values[key] = _check_field(path, key, value, getattr(defaults, key))
    settings = dataclasses.replace(defaults, **values)
    if settings.alpha_min >= settings.alpha_max:
        raise SpecError(
            f"{path}: alpha_min ({settings.alpha_min}) must be < alpha_max ({settings.alpha_max})"
        )
    return settings
