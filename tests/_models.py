"""Models for equivalence tests: non-trivial BatchNorm statistics and weights, so a fused or exported model that
dropped a term would disagree (fresh BNs are identities and layer scales of 1e-6 hide the blocks)."""
from __future__ import annotations

import torch
from torch import nn


def randomise_(model: nn.Module) -> nn.Module:
    """Every running variance in [0.5, 2] and every other float tensor N(0, 0.2); returns ``model`` in eval mode."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.is_floating_point():
                tensor.normal_(0.0, 0.2)
    return model.eval()
