"""``torch.autograd.anomaly_mode``: anomaly detection at PyTorch's path."""

from .anomaly import detect_anomaly, set_detect_anomaly

__all__ = ["detect_anomaly", "set_detect_anomaly"]
