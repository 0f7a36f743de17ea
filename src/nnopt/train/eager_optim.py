"""torch.optim without importing torch's compiler stack in an eager process.

torch.optim guards its entry points against torch.compile: `Optimizer.__init__` ->
`add_param_group`, `zero_grad`, `state_dict` and the functional kernels (`adam`, `rmsprop`,
...) run through `torch._disable_dynamo`, and every built-in `step()` through
`_use_grad_for_differentiable`, which calls `torch._dynamo.graph_break()`. Both import
`torch._dynamo` at the first call (torch 2.13), and that import pulls in torch._inductor,
sympy and torch.distributed: ~1.4 s and most of a job's start-up on this machine
(benchmarks/startup.py), to disable a compiler that an eager job never starts.

`defer_dynamo_import()` makes those guards import nothing while `torch._dynamo` is not
loaded, and behave exactly as torch's once something else has loaded it:

* `torch._disable_dynamo(fn)` caches `torch._dynamo.disable(fn)` on `fn.__dynamo_disable`
  at its first call; we pre-fill that cache with a deferred wrapper that calls `fn` as is
  (nothing to disable: no frame is being compiled without dynamo loaded) and hands over to
  torch's own `disable` as soon as `torch._dynamo` is in `sys.modules`.
* A built-in optimizer's `step` (the `_use_grad` wrapper) is rewrapped by a twin that sets
  grad mode as torch's does and calls `graph_break()` only when dynamo is loaded (a graph
  break is a no-op outside tracing).

The update math is untouched (the same kernels run with the same arguments), so the
numbers are bit-identical (tests/train/test_engine.py compares the engine with a hand-written
torch.optim loop, tests/train/test_engine_startup.py checks that no compiler stack is imported).
Where torch's internals differ from what is expected here, nothing is patched.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.optim
import torch.optim.optimizer as torch_optimizer

__all__ = ["defer_dynamo_import"]

_DONE = False


def _code_named(func: Callable[..., Any], name: str):
    """The code object of the closure `name` defined inside `func` (None if absent)."""
    return next((c for c in func.__code__.co_consts if getattr(c, "co_name", None) == name),
                None)  # fmt: skip


def _deferred_disable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` itself until torch._dynamo is loaded; then torch's `disable(fn)`, cached as
    torch caches it (`torch._compile._disable_dynamo`, recursive=True)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        dynamo = sys.modules.get("torch._dynamo")
        if dynamo is None:
            return fn(*args, **kwargs)
        real = dynamo.disable(fn, True, wrapping=False)
        fn.__dynamo_disable = real  # type: ignore[attr-defined]
        return real(*args, **kwargs)

    return call


def _eager_use_grad(step: Callable[..., Any]) -> Callable[..., Any]:
    """torch.optim.optimizer._use_grad_for_differentiable, importing no compiler."""

    def _use_grad(*args: Any, **kwargs: Any) -> Any:
        optimizer = args[0]
        prev_grad = torch.is_grad_enabled()
        dynamo = sys.modules.get("torch._dynamo")  # loaded only if something compiles
        try:
            torch.set_grad_enabled(optimizer.defaults["differentiable"])
            if dynamo is not None:
                dynamo.graph_break()
            ret = step(*args, **kwargs)
        finally:
            if dynamo is not None:
                dynamo.graph_break()
            torch.set_grad_enabled(prev_grad)
        return ret

    functools.update_wrapper(_use_grad, step)
    return _use_grad


def _optimizer_classes() -> Iterator[type]:
    seen, todo = set(), [torch.optim.Optimizer]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.add(cls)
            todo += cls.__subclasses__()
            yield cls


def _module_functions() -> Iterator[Any]:
    """Functions of the loaded torch.optim modules and methods of every Optimizer class."""
    for name, module in list(sys.modules.items()):
        if name.startswith("torch.optim") and module is not None:
            yield from vars(module).values()
    for cls in _optimizer_classes():
        yield from vars(cls).values()


def _defer_disables(inner_code, fallback_code) -> None:
    for obj in _module_functions():
        code = getattr(obj, "__code__", None)
        fn = getattr(obj, "__wrapped__", None)
        if fn is None or code not in (inner_code, fallback_code):
            continue
        if not hasattr(fn, "__dynamo_disable"):  # torch caches its own disable there
            fn.__dynamo_disable = _deferred_disable(fn)


def _rewrap_steps(use_grad_code) -> None:
    for cls in _optimizer_classes():
        step = vars(cls).get("step")
        hooked = getattr(step, "hooked", False)  # Optimizer._patch_step_function's wrapper
        guarded = step.__wrapped__ if hooked else step
        if getattr(guarded, "__code__", None) is not use_grad_code:
            continue
        new = _eager_use_grad(guarded.__wrapped__)
        if hooked:
            new = torch.optim.Optimizer.profile_hook_step(new)
            new.hooked = True  # type: ignore[attr-defined]
        cls.step = new


def defer_dynamo_import() -> None:
    """Make torch.optim's compile guards import torch._dynamo only once something else has
    (see the module docstring). Idempotent; a no-op if dynamo is already loaded."""
    global _DONE
    if _DONE or "torch._dynamo" in sys.modules:
        return
    _DONE = True
    import torch._compile

    inner_code = _code_named(torch._compile._disable_dynamo, "inner")
    wrapper = torch_optimizer._disable_dynamo_if_unsupported()
    fallback_code = _code_named(wrapper, "maybe_fallback")
    use_grad_code = _code_named(torch_optimizer._use_grad_for_differentiable, "_use_grad")
    _defer_disables(inner_code, fallback_code)
    if use_grad_code is not None:
        _rewrap_steps(use_grad_code)
