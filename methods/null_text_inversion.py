"""Null-text inversion (Mokady et al., 2023): per-step unconditional embeddings that make CFG sampling retrace a
DDIM inversion trajectory, so a real image is reconstructed at guidance 7.5.

At sampling step i the unconditional embedding (initialised with the previous step's result) is optimised with
Adam, lr = 1e-2·(1 − i/100), for up to 10 steps on ‖DDIM_step(z̄_i, ε_cfg) − z*_{i+1}‖², stopping early once the
loss is below ε + i·2e-5 (ε = 1e-5). Gradients flow through the UNet, so it runs in float32 (in float16 the
optimisation diverges or underflows).

Cost per step: 1 conditional evaluation, k ≤ inner_steps unconditional evaluations (each with a backward pass)
and one CFG evaluation on 2 rows to advance: Σ_i (3 + k_i) UNet evaluations on top of the DDIM inversion, and
Σ_i k_i backward passes through the UNet (the runner's ``grad_evals``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from methods.ddim_inversion import Trajectory, ddim_schedulers, predict_noise


@dataclass
class NullTextResult:
    embeddings: list[torch.Tensor]  # one (1, 77, d) unconditional embedding per sampling step
    inner_steps: list[int]  # Adam steps taken at each sampling step (early stop makes them vary)
    losses: list[float] = field(default_factory=list)  # last loss seen at each sampling step


def null_text_inversion(
    pipe,
    trajectory: Trajectory,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    guidance_scale: float = 7.5,
    inner_steps: int = 10,
    epsilon: float = 1e-5,
    lr: float = 1e-2,
) -> NullTextResult:
    """Optimise one unconditional embedding per step so that CFG sampling from ``trajectory.z_T`` with ``cond``
    (1, 77, d) retraces ``trajectory``. ``uncond`` (1, 77, d) is the starting embedding (the empty prompt's)."""
    unet = pipe.unet
    if unet.dtype != torch.float32:
        raise ValueError(
            f"null-text inversion needs a float32 UNet (got {str(unet.dtype).replace('torch.', '')}): set "
            f"model.dtype=float32 or use method.inversion=ddim"
        )
    num_steps = len(trajectory.latents) - 1
    sampler, _ = ddim_schedulers(pipe, num_steps, cond.device)
    latent = trajectory.z_T
    uncond = uncond.detach().float()
    result = NullTextResult([], [])
    for i, t in enumerate(sampler.timesteps):
        target = trajectory.target(i)
        with torch.no_grad():
            eps_cond = unet(latent, t, encoder_hidden_states=cond).sample
        embedding = uncond.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([embedding], lr=lr * (1.0 - i / 100.0))
        taken, loss_value = 0, float("nan")
        for _ in range(inner_steps):
            with torch.enable_grad():
                eps_uncond = unet(latent, t, encoder_hidden_states=embedding).sample
                eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
                prev = sampler.step(eps, t, latent).prev_sample
                loss = torch.nn.functional.mse_loss(prev, target)
                # gradient for the embedding only: no weight gradients are accumulated in the shared UNet
                (grad,) = torch.autograd.grad(loss, [embedding])
            embedding.grad = grad
            optimizer.step()
            taken += 1
            loss_value = float(loss.detach())
            if loss_value < epsilon + i * 2e-5:
                break
        uncond = embedding.detach()
        result.embeddings.append(uncond)
        result.inner_steps.append(taken)
        result.losses.append(loss_value)
        with torch.no_grad():
            eps = predict_noise(unet, latent, t, cond, uncond, guidance_scale)
            latent = sampler.step(eps, t, latent).prev_sample
    return result
