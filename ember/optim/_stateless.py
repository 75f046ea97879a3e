"""``swap_in_optimizer_params_and_state``: run an optimizer's step on other tensors."""

from __future__ import annotations

import contextlib
from collections import defaultdict

__all__ = ["swap_in_optimizer_params_and_state"]


def _check(optimizer, swapin_optim_state):
    if not optimizer.state:
        raise RuntimeError("swap_in_optimizer_params_and_state requires initialized optimizer "
                           "state.")
    if not isinstance(swapin_optim_state, dict) or not isinstance(
            swapin_optim_state.get("state"), dict) or not isinstance(
            swapin_optim_state.get("param_groups"), list):
        raise RuntimeError("swap_in_optimizer_params_and_state requires a DCP-style optimizer "
                           "state_dict ({'state': {...}, 'param_groups': [...]}).")
    groups = swapin_optim_state["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise RuntimeError(f"swap_in_optimizer_params_and_state: the state has {len(groups)} "
                           f"param groups, the optimizer {len(optimizer.param_groups)}.")
    for i, (live, new) in enumerate(zip(optimizer.param_groups, groups)):
        if len(new.get("params", ())) != len(live["params"]):
            raise RuntimeError(f"swap_in_optimizer_params_and_state: param group {i} has "
                               f"{len(new.get('params', ()))} parameters in the state and "
                               f"{len(live['params'])} in the optimizer.")
    return groups


@contextlib.contextmanager
def swap_in_optimizer_params_and_state(optimizer, swapin_parameters, swapin_optim_state):
    """Inside the block, ``optimizer`` steps ``swapin_parameters`` (a dict, in the order of
    the optimizer's parameters) with the state of ``swapin_optim_state`` (an
    ``optimizer.state_dict()``-shaped dict); the live parameters, hyperparameters and state
    are restored on exit. In-place updates of the given state's tensors are visible to the
    caller afterwards; other changes to the state are not."""
    groups = _check(optimizer, swapin_optim_state)
    flat = list(swapin_parameters.values())
    wanted = sum(len(g["params"]) for g in groups)
    if len(flat) != wanted:
        raise RuntimeError("swap_in_optimizer_params_and_state requires the explicit parameter "
                           f"state to match optimizer.param_groups ordering: got {len(flat)} "
                           f"parameters for {wanted}.")
    ids = {i for g in groups for i in g["params"]}
    extra = [k for k in swapin_optim_state["state"] if k not in ids]
    if extra:
        raise RuntimeError("swap_in_optimizer_params_and_state requires "
                           "swapin_optim_state['state'] to be keyed only by packed parameter "
                           f"ids from param_groups[*]['params']; got extra keys {extra!r}.")
    original_state = optimizer.state
    snapshots = [dict(g) for g in optimizer.param_groups]
    try:
        state = defaultdict(dict)
        offset = 0
        for live, new in zip(optimizer.param_groups, groups):
            params = flat[offset:offset + len(new["params"])]
            offset += len(new["params"])
            for k, v in new.items():
                if k != "params":
                    live[k] = v
            live["params"] = params
            for p, pid in zip(params, new["params"]):
                state[p] = dict(swapin_optim_state["state"].get(pid, {}))
        optimizer.state = state
        optimizer._swapped = True  # the flat (foreach) buffers belong to the live parameters
        yield
    finally:
        for group, snap in zip(optimizer.param_groups, snapshots):
            group.clear()
            group.update(snap)
        optimizer.state = original_state
        optimizer.__dict__.pop("_swapped", None)
