"""torch's operations for the rules' per-pair losses (:class:`sim.rules.definition.LossOps`).

Every per-pair loss is written once, in its rule module in :mod:`sim.rules`, against a table of the
few non-arithmetic operations it uses; sampled mode evaluates it with JAX's table, the bridge with
this one.  ``sim`` never imports torch: the bridge supplies torch's operations here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sim.rules.definition import LossOps

#: log σ, σ and stop-gradient in torch.
TORCH_OPS = LossOps(log_sigmoid=F.logsigmoid, sigmoid=torch.sigmoid, stop_gradient=torch.Tensor.detach)
