"""``ember.distributed.pipelining``: pipeline parallelism with PyTorch's API.

A model is cut into stages (``pipeline(module, mb_args, split_spec=...)`` traces it with
``ember.fx`` and cuts the graph, or build ``PipelineStage(submodule, ...)`` by hand); each rank
runs one stage, and a schedule (``ScheduleGPipe``, ``Schedule1F1B``) feeds microbatches
through, sending activations forward and their gradients back point to point over MPI.
"""

from ._ir import Pipe, SplitPoint, pipe_split, pipeline
from .schedules import PipelineScheduleSingle, Schedule1F1B, ScheduleGPipe
from .stage import PipelineStage

__all__ = ["Pipe", "PipelineScheduleSingle", "PipelineStage", "Schedule1F1B",
           "ScheduleGPipe", "SplitPoint", "pipe_split", "pipeline"]
