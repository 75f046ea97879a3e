"""A user-defined autograd Function (a numerically careful softplus), checked with gradcheck
and used to train a tiny model.

    python examples/custom_function.py [--quick]
"""

import argparse

import ember as torch


class SoftPlus(torch.autograd.Function):
    """log(1 + exp(x)), computed without overflow; derivative sigmoid(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * torch.sigmoid(x)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)

    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    ok = torch.autograd.gradcheck(SoftPlus.apply, (x,))
    ok2 = torch.autograd.gradgradcheck(SoftPlus.apply, (x,))
    print(f"gradcheck: {ok}, gradgradcheck: {ok2}")

    # use it as an activation in a small regression
    w1 = (torch.randn(1, 16) * 0.5).requires_grad_()
    w2 = (torch.randn(16, 1) * 0.5).requires_grad_()
    xs = torch.linspace(-3, 3, 128).unsqueeze(1)
    ys = xs.abs()
    opt = torch.optim.Adam([w1, w2], lr=0.05)
    first = None
    for step in range(100 if args.quick else 400):
        loss = ((SoftPlus.apply(xs @ w1) @ w2 - ys) ** 2).mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"RESULT first_loss={first:.6f} last_loss={loss.item():.6f}")


if __name__ == "__main__":
    main()
