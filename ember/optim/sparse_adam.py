"""SparseAdam: needs sparse gradients, which ember does not have yet."""

from __future__ import annotations

from .optimizer import Optimizer

__all__ = ["SparseAdam"]


class SparseAdam(Optimizer):
    """``torch.optim.SparseAdam`` updates only the rows present in sparse gradients."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False):
        raise NotImplementedError(
            "ember.optim.SparseAdam needs sparse gradients (nn.Embedding(sparse=True)), which "
            "ember does not support yet; use Adam or AdamW with dense gradients")
