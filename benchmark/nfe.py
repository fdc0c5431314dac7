"""Counting denoiser evaluations (NFE): the hardware-independent cost of a method.

A forward pre-hook on the denoiser (UNet or transformer) counts both forward calls and the batch rows they
evaluate: a classifier-free-guidance step on one image is 1 call and 2 evaluations. A call whose input takes part in
autograd (guidance by a gradient through the denoiser, e.g. Blended Diffusion) also counts, separately, the backward
pass that reaches that input (``backward_calls`` / ``backward_evaluations``).
"""

from __future__ import annotations

from typing import Any

import torch


def _denoiser_input(args: tuple, kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))


def _batch_rows(args: tuple, kwargs: dict[str, Any]) -> int:
    x = _denoiser_input(args, kwargs)
    return int(x.shape[0]) if isinstance(x, torch.Tensor) else 1


class NFECounter:
    def __init__(self) -> None:
        self.calls = 0
        self.evaluations = 0
        self.backward_calls = 0
        self.backward_evaluations = 0
        self._handles: dict[int, Any] = {}

    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        self.calls += 1
        rows = _batch_rows(args, kwargs)
        self.evaluations += rows
        x = _denoiser_input(args, kwargs)
        if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad:
            x.register_hook(lambda grad: self._count_backward(rows))

    def _count_backward(self, rows: int) -> None:
        """The gradient reached the denoiser's input: one backward pass through it."""
        self.backward_calls += 1
        self.backward_evaluations += rows

    def attach(self, module: torch.nn.Module) -> None:
        """Count ``module``'s forward calls (idempotent per module)."""
        if id(module) not in self._handles:
            self._handles[id(module)] = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def attach_pipeline(self, pipe: Any) -> None:
        for attr in ("unet", "transformer"):
            module = getattr(pipe, attr, None)
            if isinstance(module, torch.nn.Module):
                self.attach(module)

    def reset(self) -> None:
        self.calls = 0
        self.evaluations = 0
        self.backward_calls = 0
        self.backward_evaluations = 0

    def detach(self) -> None:
        for handle in self._handles.values():
            handle.remove()
        self._handles.clear()
