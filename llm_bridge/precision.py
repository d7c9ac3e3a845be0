"""Mixed precision for the bridge: float32 master weights, low-precision compute under autocast.

Training weights stored in bfloat16 or float16 loses most small updates (a bf16 weight of size 0.02 has
a resolution of about 1e-4, so an AdamW step of 1e-5 rounds to nothing) and float16's AdamW state
underflows to NaN.  As Accelerate and TRL do, ``model.dtype = "bfloat16"`` / ``"float16"`` therefore
keep the trainable weights in float32 (the master weights, which the optimiser updates and the
checkpoints store) and run forward passes — generation, scoring, training — under
``torch.autocast`` in the requested dtype, on CPU and CUDA alike.  float16 also scales the loss
dynamically (``torch.amp.GradScaler``): gradients are computed for loss × s, unscaled before clipping
and stepping, and a step whose gradients overflowed is skipped with s halved (Micikevicius et al.
2018, "Mixed precision training").  With a LoRA adapter the frozen base weights stay in the requested
dtype (they are never updated) and the adapter is float32 (peft's default).

``float32`` / ``float64`` train in that dtype; ``training.bf16`` adds bf16 autocast on CUDA (as before).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from bandits.errors import PrefsimError

LOW_PRECISION = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclasses.dataclass(frozen=True)
class Precision:
    """How the model is stored and run."""

    load_dtype: str
    """dtype the weights are loaded in (float32 master weights for a low-precision full fine-tune)."""
    device_type: str
    """``cpu`` or ``cuda`` (for autocast and the gradient scaler)."""
    autocast_dtype: torch.dtype | None = None
    """Compute dtype under ``torch.autocast`` (None: no autocast)."""

    @property
    def autocast(self) -> Callable[[], torch.autocast] | None:
        """A context-manager factory for the forward passes, or None."""
        if self.autocast_dtype is None:
            return None
        device_type, dtype = self.device_type, self.autocast_dtype
        return lambda: torch.autocast(device_type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh dynamic loss scaler for float16 compute (None otherwise)."""
        if self.autocast_dtype is torch.float16:
            return torch.amp.GradScaler(self.device_type)
        return None


def precision_for(dtype: str, device_type: str, bf16: bool, lora: bool = False) -> Precision:
    """The :class:`Precision` of ``model.dtype`` on ``device_type`` (``training.bf16``: autocast on CUDA)."""
    if dtype in LOW_PRECISION:
        return Precision(dtype if lora else "float32", device_type, LOW_PRECISION[dtype])
    if device_type == "cuda" and bf16 and dtype == "float32":
        return Precision(dtype, device_type, torch.bfloat16)
    return Precision(dtype, device_type)


def check_trainable_precision(model: torch.nn.Module, description: str = "training") -> None:
    """Refuse to train weights stored in bfloat16/float16 (see the module docstring)."""
    low = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype in LOW_PRECISION.values()})
    if low:
        raise PrefsimError(
            f"{description}: the trainable weights are {', '.join(low)}; optimiser steps on low-precision weights are "
            "lost to rounding (bfloat16) or give NaN (float16).  Keep float32 master weights: load the model in "
            'float32 and train under autocast (the bridge does this itself for model.dtype = "bfloat16" / "float16").'
        )
