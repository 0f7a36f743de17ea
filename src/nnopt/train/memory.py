"""A run's memory: its own peak RSS in a process that trains many runs (Linux; elsewhere the
process's peak so far), and the activation memory of a training step (`ActivationProbe`,
around the single engine's first forward; `activation_peak_bytes` for a run trained in a
stacked cohort, whose stacked step saves the members' tensors together)."""

from __future__ import annotations

import functools
import resource

__all__ = ["reset_peak_rss", "peak_rss_mb", "ActivationProbe", "activation_peak_bytes"]


def reset_peak_rss() -> bool:
    """Restart the process's peak-RSS count, so that a run packed after others in one
    process reports its own peak, not theirs. Linux only ('5' to /proc/self/clear_refs
    resets VmHWM and ru_maxrss, proc(5)); elsewhere the peak stays the process's own.
    The heap that earlier runs freed is first handed back to the OS (glibc malloc_trim),
    so that it does not count as this run's memory."""
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


@functools.cache
def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _trim_heap() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):  # glibc only (not musl, macOS)
        libc.malloc_trim(0)


def peak_rss_mb() -> float:
    """Peak resident set size of this process since the last reset_peak_rss() (ru_maxrss
    is KiB on Linux): the run's resident torch, data and model, at their highest."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class ActivationProbe:
    """The activation memory of one training step's forward: a context around the forward.

    On CPU, the bytes of the tensors autograd saves for backward (saved-tensor hooks,
    torch.autograd.graph): each storage counted once (a ReLU's output that the next layer
    also saves is one tensor), parameters excluded (they are `param_bytes`). All of them are
    alive together when the forward ends, so their sum is the step's peak. On CUDA, the
    allocator's peak during the forward minus what was allocated before it
    (`torch.cuda.max_memory_allocated` delta), which also counts transient buffers.
    `peak_before_bytes` keeps the CUDA peak before the probe reset it.
    """

    def __init__(self, device, params):
        self.device = device
        self._exclude = {p.untyped_storage().data_ptr() for p in params}
        self._storages: dict[int, int] = {}  # data_ptr -> nbytes
        self.peak_before_bytes: int | None = None
        self._base_bytes = 0
        self._hooks = None
        self.bytes: int | None = None

    def _pack(self, tensor):
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._exclude:
            self._storages.setdefault(ptr, storage.nbytes())
        return tensor.detach()  # the same storage; detached, so no reference cycle

    def __enter__(self) -> ActivationProbe:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_before_bytes = torch.cuda.max_memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base_bytes = torch.cuda.memory_allocated(self.device)
        else:
            self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
            self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self._hooks is not None:
            self._hooks.__exit__(*exc)
            self.bytes = sum(self._storages.values())
        else:
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._base_bytes


def activation_peak_bytes(spec, dataset, device) -> int | None:
    """The single engine's step-0 probe (nnopt.train.strategy.train_step) for a run trained
    elsewhere, e.g. a member of a stacked cohort: the run's own model alone, built as the
    engine builds it (fp32, training mode, on `device`), and one untimed forward and loss of
    a first batch (min(batch_size, n_train) train samples, gathered by index_select as the
    engine gathers them) under the run's precision. Nothing is updated; saved tensors depend
    on shapes only, so the bytes are the engine's. The RNG (init, dropout) is restored after."""
    import torch
    import torch.nn.functional as F

    from nnopt.train.loop import autocast
    from nnopt.train.models import build_model

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(spec.seed)
        model = build_model(spec.model, dataset.input_shape, dataset.n_classes, spec.init)
        model.to(device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        x = torch.as_tensor(dataset.x_train).to(device, torch.float32)
        y = torch.as_tensor(dataset.y_train).to(device, torch.int64)
        idx = torch.arange(min(spec.budget.batch_size, len(y)), device=device)
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # fresh storages, as in a step
        with ActivationProbe(device, params) as probe, autocast(device, spec.device.precision):
            F.cross_entropy(model(xb), yb)
    return probe.bytes
