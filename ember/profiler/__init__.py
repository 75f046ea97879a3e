"""``ember.profiler``: where the time and memory go (PyTorch's ``torch.profiler`` API).

``profile`` records every dispatched op (as ``aten::`` names), backward nodes, optimizer
steps, DataLoader batches, module scopes and ``record_function`` ranges; ``key_averages()``
summarises them in PyTorch's table, ``export_chrome_trace`` writes a trace that Perfetto and
chrome://tracing open.
"""

from ._events import EventList, FunctionEvent, FunctionEventAvg  # noqa: F401
from .profiler import (ProfilerAction, ProfilerActivity, profile, record_function,  # noqa: F401
                       schedule, supported_activities, tensorboard_trace_handler)

__all__ = ["profile", "record_function", "schedule", "ProfilerAction", "ProfilerActivity",
           "supported_activities", "tensorboard_trace_handler", "EventList", "FunctionEvent"]


def kineto_available():
    """Whether PyTorch's Kineto tracer is built in: never in ember (its profiler records
    ops on the dispatch path and writes the same Chrome trace format itself)."""
    return False
