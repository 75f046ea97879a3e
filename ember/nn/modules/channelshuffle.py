"""``torch.nn.modules.channelshuffle``: ChannelShuffle at PyTorch's path."""

from .pixelshuffle import ChannelShuffle

__all__ = ["ChannelShuffle"]
