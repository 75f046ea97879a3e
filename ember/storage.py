"""``torch.storage``: the storage classes at PyTorch's path."""

from ._storage import TypedStorage, UntypedStorage

__all__ = ["TypedStorage", "UntypedStorage"]
