"""Optimizers torch does not ship: Lion, Schedule-Free AdamW, and Muon paired with AdamW."""

from nnopt.train.optimizers.lion import Lion
from nnopt.train.optimizers.muon_adamw import MuonWithAdamW
from nnopt.train.optimizers.schedule_free import ScheduleFreeAdamW

__all__ = ["Lion", "MuonWithAdamW", "ScheduleFreeAdamW"]
