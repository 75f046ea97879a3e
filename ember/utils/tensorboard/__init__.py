"""``ember.utils.tensorboard``: ``SummaryWriter`` for TensorBoard (needs the ``tensorboard``
package: ``pip install 'ember[tensorboard]'``)."""

from .writer import FileWriter, SummaryWriter  # noqa: F401

__all__ = ["SummaryWriter", "FileWriter"]
