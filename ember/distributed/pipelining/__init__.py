"""``ember.distributed.pipelining``: pipeline parallelism with PyTorch's API.

A model is cut into stages (``pipeline(module, mb_args, split_spec=...)`` traces it with
``ember.fx`` and cuts the graph, or build ``PipelineStage(submodule, ...)`` by hand); each rank
runs one stage (``ScheduleGPipe``, ``Schedule1F1B``) or several (stage ``s`` on rank
``s % size``: ``ScheduleInterleaved1F1B``, ``ScheduleLoopedBFS``), and the schedule feeds
microbatches through, sending activations forward and their gradients back point to point
over MPI.
"""

from ._ir import Pipe, SplitPoint, pipe_split, pipeline
from .schedules import (PipelineScheduleMulti, PipelineScheduleSingle, Schedule1F1B,
                        ScheduleGPipe, ScheduleInterleaved1F1B, ScheduleLoopedBFS,
                        get_schedule_class)
from .stage import PipelineStage

__all__ = ["Pipe", "PipelineScheduleMulti", "PipelineScheduleSingle", "PipelineStage",
           "Schedule1F1B", "ScheduleGPipe", "ScheduleInterleaved1F1B", "ScheduleLoopedBFS",
           "SplitPoint", "get_schedule_class", "pipe_split", "pipeline"]
