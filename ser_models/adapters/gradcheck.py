"""One backward pass that proves every trainable parameter is wired into the loss."""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from ser_models.exceptions import GradientCheckError

_WAVLM_ATTENTION = re.compile(r"attention\.(q_proj|k_proj|v_proj|out_proj)\.")


def check_gradients(model: nn.Module, loss_fn: Callable[[], torch.Tensor], family: str | None = None) -> dict:
    """Run ``loss_fn`` once, backpropagate, and require a gradient on every trainable parameter.

    A parameter "received a gradient" when its ``.grad`` is not ``None``. Zero gradients are allowed: LoRA
    initialises B to zero, so A's gradient (which is multiplied by B) is exactly zero at step 0 although A is
    wired in. ``None`` means the parameter is not on the path to the loss at all, e.g. LoRA on WavLM's
    attention projections, which WavLM feeds to a fused attention kernel as raw weights.

    Args:
        model: the module whose ``requires_grad`` parameters are checked.
        loss_fn: runs a forward pass and returns a tensor (summed if not scalar).
        family: the encoder family, used to explain known traps in the error.

    Returns:
        ``{"checked": n_params_checked, "zero_grad": [names whose gradient is exactly zero]}``.

    Raises:
        GradientCheckError: listing the parameters without gradient (and the fix for the WavLM trap).
    """
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    saved = {n: p.grad for n, p in params}
    for _, p in params:
        p.grad = None
    try:
        out = loss_fn()
        loss = out if out.dim() == 0 else out.float().sum()
        if loss.requires_grad:  # else no trainable parameter is on the path: all are reported below
            loss.backward()
        missing = [n for n, p in params if p.grad is None]
        zero = [n for n, p in params if p.grad is not None and not bool(p.grad.any())]
    finally:
        # Leave the optimizer's view untouched: the check's gradients must not leak into a training step.
        for n, p in params:
            p.grad = saved[n]
    if missing:
        msg = (f"{len(missing)} of {len(params)} trainable parameters received no gradient: "
               f"{missing[:8]}{f' and {len(missing) - 8} more' if len(missing) > 8 else ''}.")
        if any(_WAVLM_ATTENTION.search(n) for n in missing) and (family in (None, "wavlm")):
            msg += (" WavLM passes its q/k/v/out_proj weights straight to a fused attention kernel, bypassing "
                    "adapters injected there: set model.adapter.target_modules=[intermediate_dense,output_dense]"
                    " (the WavLM default), for LoRA or IA3.")
        raise GradientCheckError(msg)
    return {"checked": len(params), "zero_grad": zero}
