"""A run's own peak memory in a process that trains many runs (Linux; elsewhere the
process's peak so far)."""

from __future__ import annotations

import functools
import resource

__all__ = ["reset_peak_rss", "peak_rss_mb"]


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
