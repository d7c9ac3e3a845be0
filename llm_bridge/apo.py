"""APO (Accelerated Preference Optimization, He, Yuan & Gu, arXiv 2410.06293) across LM iterations.

Not TRL's ``apo_zero``/``apo_down`` (Anchored PO).  Each iteration first runs the base proximal rule
(DPO / SPPO / INPO with reference π_t) to get π̂_{t+1}, then extrapolates between consecutive
*proximal outputs* (docs/theory.md §B.2, Eq. 3.6).  Two LM forms:

The hook and its formulas are :class:`sim.rules.apo.Extrapolation` (the same object exact and
sampled mode run); this module is the bridge's side of it: weight arithmetic on a torch model in
place.  Forms (rule parameter ``form``; the old ``extrapolation = "parameter" | "implicit"`` still
works for one release):

**Parameter space** (``form = "parameters"``, what APO's rebuttal says the authors did; ExPO-style):
    θ_{t+1} = θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t),     θ̂_0 = θ_0 = θ_ref.
Exact for log-linear policies (and tabular logits), a first-order approximation of Eq. (3.6) for a
network.  With a LoRA adapter only the adapter parameters (A, B) are extrapolated; because the
adapter's weight update BA is bilinear, (B̂+αΔB)(Â+αΔA) is *not* BA + α·Δ(BA): it is the same
first-order approximation once more.  *Extra memory:* one copy of the trainable parameters (θ̂_t, kept
on the host, or only the adapter for LoRA), plus the θ̂ checkpoint on disk for resuming.

**Implicit reference** (``form = "implicit_reference"``, an alternative the theory allows; not what APO
ran): keep the proximal
weights θ̂ in the model and shift the *reference* instead.  The next iteration's reference
log-probabilities are
    log π_{t+1}(y) ≈ (1 + α)·log π̂_{t+1}(y) − α·log π̂_t(y)      (+ a normaliser log Z′ per prompt),
which is Eq. (3.6) exactly in log space.  Pairwise losses (DPO, INPO) only use differences between
two responses to the same prompt, so log Z′ cancels and the reference is exact; the per-response
SPPO loss would see log Z′, so the implicit form is refused for base ``sppo``.  Samples come from π̂_t,
not from the extrapolated π_t (sampling from π_t would need its weights): this is the one
approximation of this form.  *Extra memory:* no extra parameters in memory; one extra scoring pass
per iteration with θ̂_{t−1} swapped in (host copy of the trainable parameters during the pass) and the
θ̂_{t−1} checkpoint on disk.
"""

from __future__ import annotations

import torch

from bandits.errors import PrefsimError
from sim.rules.apo import check_alpha, extrapolate, implicit_reference

__all__ = ["extrapolate_parameters", "implicit_reference"]


@torch.no_grad()
def extrapolate_parameters(
    model: torch.nn.Module, proximal_previous: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """In place: θ ← θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t) for every trainable parameter of ``model``
    (:func:`sim.rules.apo.extrapolate`, the ``combine`` of the bridge's extrapolation space).

    ``model`` holds θ̂_{t+1} on entry; ``proximal_previous`` maps the trainable parameter names to θ̂_t
    (as :func:`llm_bridge.models.trainable_state` returns them); its entries are consumed (popped).
    Returns θ̂_{t+1} (CPU copies), which
    the next iteration needs as its "previous proximal output".
    """
    check_alpha(alpha)
    proximal_now = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name not in proximal_previous:
            raise PrefsimError(f"apo: the previous proximal checkpoint has no parameter {name!r}.")
        current = parameter.detach().clone()
        proximal_now[name] = current.to("cpu")
        # taken out of the dict, so θ̂_t's host copy is freed tensor by tensor as it is consumed
        previous = proximal_previous.pop(name).to(parameter.device, parameter.dtype)
        parameter.copy_(extrapolate(current, previous, alpha))
    return proximal_now
