"""PyTorch's functional optimizer API (``torch.optim.adam.adam(params, grads, exp_avgs, ...)``):
one update of lists of parameters from lists of gradients and state tensors, in place.

Each function runs the optimizer class's own step (one update rule, not a second copy of
it): a throwaway instance over ``params`` is given the caller's state tensors and gradients,
steps once, and the state that changed is written back into the caller's tensors (and, for
SGD's momentum buffers, into the caller's list, as PyTorch does)."""

from __future__ import annotations

__all__ = ["adadelta", "adagrad", "adam", "adamax", "adamw", "asgd", "nadam", "radam",
           "rmsprop", "rprop", "sgd"]


def _unsupported(name, grad_scale=None, found_inf=None, **_):
    if grad_scale is not None or found_inf is not None:
        raise NotImplementedError(f"optim.{name}: grad_scale/found_inf (the fused AMP path) "
                                  f"are not supported by ember's functional optimizers")


def _step(cls, name, params, grads, states, state_steps, **hyper):
    """Run ``cls(params, **hyper).step()`` with ``grads`` and the state lists ``states``
    (``{state key: list}``, entries may be None), then write the state back in place."""
    from .. import no_grad
    from .._tensor import Tensor
    n = len(params)
    lists = dict(states)
    if state_steps is not None:
        lists["step"] = state_steps
    for key, lst in lists.items():
        if len(lst) != n:
            raise ValueError(f"optim.{name}: {len(lst)} {key} tensors for {n} parameters")
    if len(grads) != n:
        raise ValueError(f"optim.{name}: {len(grads)} gradients for {n} parameters")
    if n == 0:
        return
    opt = cls(list(params), **hyper)
    saved = [p.grad for p in params]
    try:
        for i, (p, g) in enumerate(zip(params, grads)):
            p.grad = g
            st = {key: lst[i] for key, lst in lists.items() if lst[i] is not None}
            if "step" in st and isinstance(st["step"], Tensor):
                st["step"] = st["step"].clone()  # the class may keep it as a scalar
            if st:
                opt.state[p] = st
        with no_grad():
            opt.step()
        for i, p in enumerate(params):
            new = opt.state.get(p, {})
            for key, lst in lists.items():
                if key not in new:
                    continue
                val, old = new[key], lst[i]
                if old is None:
                    lst[i] = val  # SGD's first momentum buffer: handed back in the list
                elif val is not old:
                    if isinstance(old, Tensor):
                        with no_grad():
                            old.copy_(val if isinstance(val, Tensor) else
                                      _scalar_like(val, old))
                    else:
                        lst[i] = val
    finally:
        for p, g in zip(params, saved):
            p.grad = g


def _scalar_like(v, like):
    from .. import tensor
    return tensor(float(v), dtype=like.dtype)


def adadelta(params, grads, square_avgs, acc_deltas, state_steps, capturable=False,
             foreach=None, differentiable=False, has_complex=False, *, lr, rho, eps,
             weight_decay, maximize):
    """One Adadelta update (``torch.optim.adadelta.adadelta``)."""
    from .adadelta import Adadelta
    _step(Adadelta, "adadelta", params, grads,
          {"square_avg": square_avgs, "acc_delta": acc_deltas}, state_steps, lr=lr, rho=rho,
          eps=eps, weight_decay=weight_decay, maximize=maximize)


def adagrad(params, grads, state_sums, state_steps, fused=None, grad_scale=None,
            found_inf=None, has_sparse_grad=False, foreach=None, differentiable=False,
            has_complex=False, *, lr, weight_decay, lr_decay, eps, maximize):
    """One Adagrad update (``torch.optim.adagrad.adagrad``)."""
    from .adagrad import Adagrad
    _unsupported("adagrad", grad_scale, found_inf)
    _step(Adagrad, "adagrad", params, grads, {"sum": state_sums}, state_steps, lr=lr,
          weight_decay=weight_decay, lr_decay=lr_decay, eps=eps, maximize=maximize)


def adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, foreach=None,
         capturable=False, differentiable=False, fused=None, grad_scale=None, found_inf=None,
         has_complex=False, decoupled_weight_decay=False, *, amsgrad, beta1, beta2, lr,
         weight_decay, eps, maximize):
    """One Adam update (``torch.optim.adam.adam``); AdamW's with
    ``decoupled_weight_decay``."""
    from .adam import Adam, AdamW
    _unsupported("adam", grad_scale, found_inf)
    states = {"exp_avg": exp_avgs, "exp_avg_sq": exp_avg_sqs}
    if amsgrad:
        states["max_exp_avg_sq"] = max_exp_avg_sqs
    _step(AdamW if decoupled_weight_decay else Adam, "adam", params, grads, states,
          state_steps, amsgrad=amsgrad, betas=(beta1, beta2), lr=lr,
          weight_decay=weight_decay, eps=eps, maximize=maximize)


def adamw(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, foreach=None,
          capturable=False, differentiable=False, fused=None, grad_scale=None, found_inf=None,
          has_complex=False, *, amsgrad, beta1, beta2, lr, weight_decay, eps, maximize):
    """One AdamW update (``torch.optim.adamw.adamw``)."""
    adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
         grad_scale=grad_scale, found_inf=found_inf, decoupled_weight_decay=True,
         amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps,
         maximize=maximize)


def adamax(params, grads, exp_avgs, exp_infs, state_steps, foreach=None, maximize=False,
           differentiable=False, capturable=False, has_complex=False, *, eps, beta1, beta2, lr,
           weight_decay):
    """One Adamax update (``torch.optim.adamax.adamax``)."""
    from .adamax import Adamax
    _step(Adamax, "adamax", params, grads, {"exp_avg": exp_avgs, "exp_inf": exp_infs},
          state_steps, eps=eps, betas=(beta1, beta2), lr=lr, weight_decay=weight_decay,
          maximize=maximize)


def asgd(params, grads, axs, mus, etas, state_steps, foreach=None, maximize=False,
         differentiable=False, capturable=False, has_complex=False, *, lambd, lr, t0, alpha,
         weight_decay):
    """One ASGD update (``torch.optim.asgd.asgd``)."""
    from .asgd import ASGD
    _step(ASGD, "asgd", params, grads, {"ax": axs, "mu": mus, "eta": etas}, state_steps,
          lambd=lambd, lr=lr, t0=t0, alpha=alpha, weight_decay=weight_decay, maximize=maximize)


def nadam(params, grads, exp_avgs, exp_avg_sqs, mu_products, state_steps,
          decoupled_weight_decay=False, foreach=None, capturable=False, differentiable=False,
          has_complex=False, maximize=False, *, beta1, beta2, lr, weight_decay, momentum_decay,
          eps):
    """One NAdam update (``torch.optim.nadam.nadam``)."""
    from .nadam import NAdam
    _step(NAdam, "nadam", params, grads,
          {"exp_avg": exp_avgs, "exp_avg_sq": exp_avg_sqs, "mu_product": mu_products},
          state_steps, betas=(beta1, beta2), lr=lr, weight_decay=weight_decay,
          momentum_decay=momentum_decay, eps=eps, decoupled_weight_decay=decoupled_weight_decay,
          maximize=maximize)


def radam(params, grads, exp_avgs, exp_avg_sqs, state_steps, decoupled_weight_decay=False,
          foreach=None, differentiable=False, capturable=False, has_complex=False,
          maximize=False, *, beta1, beta2, lr, weight_decay, eps):
    """One RAdam update (``torch.optim.radam.radam``)."""
    from .radam import RAdam
    _step(RAdam, "radam", params, grads, {"exp_avg": exp_avgs, "exp_avg_sq": exp_avg_sqs},
          state_steps, betas=(beta1, beta2), lr=lr, weight_decay=weight_decay, eps=eps,
          decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)


def rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffer_list, state_steps,
            foreach=None, maximize=False, differentiable=False, capturable=False,
            has_complex=False, *, lr, alpha, eps, weight_decay, momentum, centered):
    """One RMSprop update (``torch.optim.rmsprop.rmsprop``)."""
    from .rmsprop import RMSprop
    states = {"square_avg": square_avgs}
    if centered:
        states["grad_avg"] = grad_avgs
    if momentum > 0:
        states["momentum_buffer"] = momentum_buffer_list
    _step(RMSprop, "rmsprop", params, grads, states, state_steps, lr=lr, alpha=alpha, eps=eps,
          weight_decay=weight_decay, momentum=momentum, centered=centered, maximize=maximize)


def rprop(params, grads, prevs, step_sizes, state_steps, foreach=None, capturable=False,
          maximize=False, differentiable=False, has_complex=False, *, step_size_min,
          step_size_max, etaminus, etaplus):
    """One Rprop update (``torch.optim.rprop.rprop``); ``step_sizes`` hold the current
    per-element step sizes (the class's ``lr`` only initialises them)."""
    from .rprop import Rprop
    _step(Rprop, "rprop", params, grads, {"prev": prevs, "step_size": step_sizes},
          state_steps, etas=(etaminus, etaplus), step_sizes=(step_size_min, step_size_max),
          maximize=maximize)


def sgd(params, d_p_list, momentum_buffer_list, has_sparse_grad=False, foreach=None,
        fused=None, grad_scale=None, found_inf=None, *, weight_decay, momentum, lr, dampening,
        nesterov, maximize):
    """One SGD update (``torch.optim.sgd.sgd``); a None momentum buffer is created and
    stored back into ``momentum_buffer_list``."""
    from .sgd import SGD
    _unsupported("sgd", grad_scale, found_inf)
    states = {"momentum_buffer": momentum_buffer_list} if momentum else {}
    _step(SGD, "sgd", params, d_p_list, states, None, weight_decay=weight_decay,
          momentum=momentum, lr=lr, dampening=dampening, nesterov=nesterov, maximize=maximize)
