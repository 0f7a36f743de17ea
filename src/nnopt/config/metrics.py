"""What each run metric means for the report: label, display unit and scale, direction.

`metric_info(name)` never fails: a metric the engine adds later gets a label from its name
and a direction from its suffix (losses, times, bytes and counts are better when lower).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METRIC_NAMES", "MetricInfo", "METRICS", "CENSORED", "SUMMARY_METRICS", "metric_info"]


# Every metric of contract §2, in its order; a failed run has all of them null.
METRIC_NAMES = (
    "test_accuracy", "test_loss", "test_accuracy_at_best_val", "best_val_accuracy",
    "best_val_step", "final_train_loss", "final_train_accuracy", "final_val_loss",
    "final_val_accuracy", "steps", "epochs", "final_lr",
    "epochs_to_target", "steps_to_target", "time_to_target_s",
    "epochs_to_target_loss", "steps_to_target_loss", "time_to_target_loss_s",
    "train_time_s", "eval_time_s", "wall_time_s", "samples_per_s",
    "param_bytes", "optimizer_state_bytes", "peak_rss_mb", "peak_cuda_mb",
    "weight_norm", "weight_sparsity",
    "grad_bytes", "activation_peak_bytes", "train_step_memory_bytes",
    "step_time_median_s", "step_time_iqr_s",
    "n_params", "n_train", "n_val", "n_test", "n_classes",
)  # fmt: skip


@dataclass(frozen=True)
class MetricInfo:
    label: str
    unit: str  # of the displayed value (after `scale`)
    higher_is_better: bool
    scale: float = 1.0  # displayed = stored × scale (fractions → %, bytes → MiB)
    censored: bool = False  # to-target metrics: null = never reached, not unknown
    digits: int = 2  # decimals shown

    def display(self, value: float) -> float:
        return value * self.scale

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


_MIB = 1 / 2**20
METRICS: dict[str, MetricInfo] = {
    "test_accuracy": MetricInfo("Test accuracy", "%", True, 100, digits=1),
    "test_loss": MetricInfo("Test loss", "", False, digits=3),
    "test_accuracy_at_best_val": MetricInfo("Test accuracy at best val", "%", True, 100, digits=1),
    "best_val_accuracy": MetricInfo("Best validation accuracy", "%", True, 100, digits=1),
    "best_val_step": MetricInfo("Step of best validation", "steps", False, digits=0),
    "final_train_loss": MetricInfo("Final train loss", "", False, digits=3),
    "final_train_accuracy": MetricInfo("Final train accuracy", "%", True, 100, digits=1),
    "final_val_loss": MetricInfo("Final validation loss", "", False, digits=3),
    "final_val_accuracy": MetricInfo("Final validation accuracy", "%", True, 100, digits=1),
    "steps": MetricInfo("Steps", "steps", False, digits=0),
    "epochs": MetricInfo("Epochs", "epochs", False, digits=1),
    "final_lr": MetricInfo("Final learning rate", "", False, digits=5),
    "epochs_to_target": MetricInfo("Epochs to target", "epochs", False, censored=True, digits=1),
    "steps_to_target": MetricInfo("Steps to target", "steps", False, censored=True, digits=0),
    "time_to_target_s": MetricInfo("Time to target", "s", False, censored=True),
    "epochs_to_target_loss": MetricInfo("Epochs to target loss", "epochs", False,
                                        censored=True, digits=1),
    "steps_to_target_loss": MetricInfo("Steps to target loss", "steps", False, censored=True,
                                       digits=0),
    "time_to_target_loss_s": MetricInfo("Time to target loss", "s", False, censored=True),
    "train_time_s": MetricInfo("Training time", "s", False),
    "eval_time_s": MetricInfo("Evaluation time", "s", False),
    "wall_time_s": MetricInfo("Wall time", "s", False),
    "samples_per_s": MetricInfo("Throughput", "samples/s", True, digits=0),
    "param_bytes": MetricInfo("Parameter memory", "MiB", False, _MIB, digits=3),
    "optimizer_state_bytes": MetricInfo("Optimizer state", "MiB", False, _MIB, digits=3),
    "peak_rss_mb": MetricInfo("Peak memory (RSS)", "MB", False, digits=0),
    "peak_cuda_mb": MetricInfo("Peak GPU memory", "MB", False, digits=0),
    "weight_norm": MetricInfo("Weight norm", "", False),
    "weight_sparsity": MetricInfo("Weight sparsity", "%", True, 100, digits=1),
    "grad_bytes": MetricInfo("Gradient memory", "MiB", False, _MIB, digits=3),
    "activation_peak_bytes": MetricInfo("Activation memory (peak of a step)", "MiB", False,
                                        _MIB, digits=3),
    "train_step_memory_bytes": MetricInfo("Training-step memory", "MiB", False, _MIB, digits=3),
    "step_time_median_s": MetricInfo("Time per step (median)", "ms", False, 1e3, digits=3),
    "step_time_iqr_s": MetricInfo("Time per step (IQR)", "ms", False, 1e3, digits=3),
    "n_params": MetricInfo("Parameters", "", False, digits=0),
    "n_train": MetricInfo("Train samples", "", True, digits=0),
    "n_val": MetricInfo("Validation samples", "", True, digits=0),
    "n_test": MetricInfo("Test samples", "", True, digits=0),
    "n_classes": MetricInfo("Classes", "", True, digits=0),
}
CENSORED = frozenset(k for k, v in METRICS.items() if v.censored)
# Summarized for every study besides its own compared metrics (figures and claims use them).
SUMMARY_METRICS = (
    "test_accuracy",
    "final_train_accuracy",
    "final_train_loss",
    "final_val_loss",
    "best_val_accuracy",
    "train_time_s",
    "wall_time_s",
    "steps_to_target",
    "epochs_to_target",
    "time_to_target_s",
    "optimizer_state_bytes",
    "peak_rss_mb",
)
_LOWER_SUFFIXES = ("loss", "_s", "_bytes", "_mb", "_step", "steps", "_to_target")


def metric_info(name: str) -> MetricInfo:
    if name in METRICS:
        return METRICS[name]
    lower = name.endswith(_LOWER_SUFFIXES)
    return MetricInfo(name.replace("_", " ").capitalize(), "", not lower,
                      censored="to_target" in name)
