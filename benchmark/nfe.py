"""Counting denoiser evaluations (NFE) and the backward passes through the denoiser: the hardware-independent cost
of a method.

A forward pre-hook on the denoiser (UNet or transformer) counts both forward calls and the batch rows they
evaluate: a classifier-free-guidance step on one image is 1 call and 2 evaluations. A forward hook puts a gradient
hook on each output that requires a gradient; each time a backward pass reaches that output, its batch rows are
counted as ``grad_evals`` (null-text inversion: one per Adam step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def _batch_rows(args: tuple, kwargs: dict[str, Any]) -> int:
    x = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
    return int(x.shape[0]) if isinstance(x, torch.Tensor) else 1


def _output_tensor(output: Any) -> torch.Tensor | None:
    """The denoiser's prediction: a tensor, the first of a tuple, ``.sample`` or a mapping's first tensor."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    sample = getattr(output, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    if isinstance(output, Mapping):
        return next((v for v in output.values() if isinstance(v, torch.Tensor)), None)
    return None


class NFECounter:
    def __init__(self) -> None:
        self.calls = 0
        self.evaluations = 0
        self.grad_evals = 0
        self._handles: dict[int, list[Any]] = {}

    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        self.calls += 1
        self.evaluations += _batch_rows(args, kwargs)

    def _count_backward(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        out = _output_tensor(output)
        if out is not None and out.requires_grad:
            rows = int(out.shape[0])

            def reached(grad: torch.Tensor) -> None:
                self.grad_evals += rows

            out.register_hook(reached)

    def attach(self, module: torch.nn.Module) -> None:
        """Count ``module``'s forward calls and backward passes (idempotent per module)."""
        if id(module) not in self._handles:
            self._handles[id(module)] = [
                module.register_forward_pre_hook(self._hook, with_kwargs=True),
                module.register_forward_hook(self._count_backward, with_kwargs=True),
            ]

    def attach_pipeline(self, pipe: Any) -> None:
        for attr in ("unet", "transformer"):
            module = getattr(pipe, attr, None)
            if isinstance(module, torch.nn.Module):
                self.attach(module)

    def reset(self) -> None:
        self.calls = 0
        self.evaluations = 0
        self.grad_evals = 0

    def detach(self) -> None:
        for handles in self._handles.values():
            for handle in handles:
                handle.remove()
        self._handles.clear()
