"""``ember.distributed.algorithms.join``: training with uneven inputs across ranks.

Inside ``with Join([ddp_model, ...]):`` each rank trains on as many batches as it has. Every
iteration of a rank that still has data starts with one all-reduce of a 1 (through
``Join.notify_join_context``); a rank that ran out of data leaves its loop and, in
``__exit__``, answers those all-reduces with a 0 and runs each joinable's ``main_hook``, which
issues the same collectives the others issue in an iteration (for DDP: the buffer broadcast and
every gradient bucket's all-reduce, with zeros). When the all-reduce sums to 0 every rank has
joined; each joinable's ``post_hook(is_last_joiner)`` then runs (DDP: the model of the last
rank to join, which trained longest, is broadcast to all).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

__all__ = ["JoinHook", "Joinable", "Join"]


class JoinHook:
    """What a joined rank does: ``main_hook`` shadows one iteration's collectives of the
    ranks still training; ``post_hook`` runs once all ranks have joined."""

    def main_hook(self) -> None:
        pass

    def post_hook(self, is_last_joiner: bool) -> None:
        pass


class Joinable(ABC):
    """A class whose per-iteration collectives can be shadowed by joined ranks."""

    @abstractmethod
    def __init__(self):
        super().__init__()
        self._join_config = _JoinConfig.construct_disabled_join_config()

    @abstractmethod
    def join_hook(self, **kwargs) -> JoinHook:
        ...

    @property
    @abstractmethod
    def join_device(self):
        ...

    @property
    @abstractmethod
    def join_process_group(self):
        ...


class _JoinConfig(NamedTuple):
    enable: bool
    throw_on_early_termination: bool
    is_first_joinable: bool

    @staticmethod
    def construct_disabled_join_config():
        return _JoinConfig(enable=False, throw_on_early_termination=False,
                           is_first_joinable=False)


def _all_reduce_int(value, group, op=None):
    from .. import distributed_c10d as c10d
    from ...ops.creation import tensor
    t = tensor([int(value)])
    c10d.all_reduce(t, op=op or c10d.ReduceOp.SUM, group=group)
    return int(t._data[0])


class Join:
    """Context manager for uneven inputs over ``joinables`` (e.g. ``[ddp_model]``); every
    joinable must use the same process group. ``throw_on_early_termination=True`` raises on
    every rank as soon as one rank has run out of data, instead of shadowing."""

    def __init__(self, joinables, enable=True, throw_on_early_termination=False, **kwargs):
        if len(joinables) == 0:
            raise ValueError("The join context manager requires at least one joinable")
        self._joinables = list(joinables)
        self._join_hooks = [j.join_hook(**kwargs) for j in self._joinables]
        self._enable = enable
        self._throw_on_early_termination = throw_on_early_termination
        self._set_joinable_configs()
        self._extract_dist_info()

    def _set_joinable_configs(self):
        for i, joinable in enumerate(self._joinables):
            joinable._join_config = _JoinConfig(
                enable=self._enable,
                throw_on_early_termination=self._throw_on_early_termination,
                is_first_joinable=(i == 0))

    def _extract_dist_info(self):
        groups = {id(j.join_process_group): j.join_process_group for j in self._joinables}
        if len(groups) != 1:
            raise ValueError("Using join context manager with multiple process groups")
        self._process_group = next(iter(groups.values()))
        from .. import distributed_c10d as c10d
        pg = self._process_group
        self._group = None if pg is c10d.GroupMember.WORLD else pg
        self._rank = c10d.get_rank(self._group)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if not self._enable or exc_type is not None:
                return False  # an exception: let it end the job rather than wait for peers
            from .. import distributed_c10d as c10d
            all_joined, is_last_joiner = False, True
            while not all_joined:
                active = _all_reduce_int(0, self._group)
                if active == 0:
                    all_joined = True
                    break
                if self._throw_on_early_termination:
                    _all_reduce_int(1, self._group)  # answers the others' check, see notify
                    raise RuntimeError(f"Rank {self._rank} exhausted all inputs.")
                is_last_joiner = False
                for hook in self._join_hooks:
                    hook.main_hook()
            # the last joiners are the ranks that found everybody done at their first check;
            # the highest of them is the authority for the post hooks
            last = _all_reduce_int(self._rank if is_last_joiner else -1, self._group,
                                   c10d.ReduceOp.MAX)
            for hook in self._join_hooks:
                hook.post_hook(self._rank == last)
            return False
        finally:
            for joinable in self._joinables:
                joinable._join_config = _JoinConfig.construct_disabled_join_config()

    @staticmethod
    def notify_join_context(joinable):
        """Called by a joinable at the start of each iteration: the first joinable of an
        enabled context all-reduces a 1 (the joined ranks answer with 0). Returns the number
        of ranks still training (None when not inside an enabled context)."""
        config = getattr(joinable, "_join_config", None)
        if config is None or not config.enable or not config.is_first_joinable:
            return None
        from .. import distributed_c10d as c10d
        pg = joinable.join_process_group
        group = None if pg is c10d.GroupMember.WORLD else pg
        active = _all_reduce_int(1, group)
        if config.throw_on_early_termination:
            world = c10d.get_world_size(group)
            finished = _all_reduce_int(0, group)
            if active < world or finished:
                raise RuntimeError("Detected at least one rank that exhausted inputs. "
                                   "Throwing across all ranks.")
        return active


