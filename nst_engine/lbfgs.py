"""L-BFGS for a fixed budget of objective evaluations, without host-device syncs.

torch.optim.LBFGS reads loss and gradient values on the host every iteration (tolerance
tests, curvature checks), which stalls a GPU, and it walks its history one pair at a time.
Here the inverse-Hessian product uses the compact representation of Byrd, Nocedal and
Schnabel (1994): a handful of matrix-vector products and two small triangular solves,
whatever the history length. Pairs that fail the curvature condition are zeroed on the
device rather than skipped, which removes them from the product exactly.

As in Gatys et al.'s and pastiche's use of L-BFGS there is no line search: every step has
length one, and every iteration costs exactly one evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

CURVATURE_EPS = 1e-10


class LBFGSMemory:
    """The last ``size`` curvature pairs (s, y) of an n-dimensional problem, in a ring."""

    def __init__(self, size: int, n: int, like: torch.Tensor) -> None:
        self.size = size
        self.stored = 0
        self.s = like.new_zeros(size, n)
        self.y = like.new_zeros(size, n)
        self.sy = like.new_zeros(size, size)  # sy[i, j] = s_i . y_j
        self.yy = like.new_zeros(size, size)  # yy[i, j] = y_i . y_j
        self.gamma = like.new_ones(())  # initial inverse Hessian scale, s.y / y.y of the last good pair

    def push(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Remember a step ``s`` and its gradient change ``y``; a pair with s.y <= 0 counts as zero."""
        sy = torch.dot(s, y)
        good = sy > CURVATURE_EPS
        keep = good.to(s.dtype)
        s, y = s * keep, y * keep
        slot = self.stored % self.size
        self.s[slot] = s
        self.y[slot] = y
        self.sy[slot, :] = self.y @ s
        self.sy[:, slot] = self.s @ y
        y_products = self.y @ y
        self.yy[slot, :] = y_products
        self.yy[:, slot] = y_products
        self.gamma = torch.where(good, sy / torch.dot(y, y).clamp_min(CURVATURE_EPS), self.gamma)
        self.stored += 1

    def times_inverse_hessian(self, g: torch.Tensor) -> torch.Tensor:
        """H g for the L-BFGS inverse Hessian approximation H built from the stored pairs."""
        if self.stored == 0:
            return self.gamma * g
        # Chronological order of the ring's slots, oldest first; empty slots are zero pairs.
        order = torch.arange(self.stored, self.stored + self.size, device=g.device) % self.size
        sy = self.sy[order][:, order]
        yy = self.yy[order][:, order]
        diagonal = torch.diagonal(sy)
        # Zeroed pairs get a unit diagonal so R stays invertible; their rows and columns are
        # zero elsewhere, so they drop out of the product.
        r = torch.triu(sy, diagonal=1) + torch.diag(torch.where(diagonal > 0, diagonal, torch.ones_like(diagonal)))
        a = (self.s @ g)[order]
        b = (self.y @ g)[order]
        u = torch.linalg.solve_triangular(r, a.unsqueeze(1), upper=True).squeeze(1)
        v = diagonal * u + self.gamma * (yy @ u) - self.gamma * b
        top = torch.linalg.solve_triangular(r.T, v.unsqueeze(1), upper=False).squeeze(1)
        coefficients_s = torch.empty_like(top)
        coefficients_s[order] = top
        coefficients_y = torch.empty_like(u)
        coefficients_y[order] = -self.gamma * u
        return self.gamma * g + coefficients_s @ self.s + coefficients_y @ self.y


def minimise(
    x: torch.Tensor,
    evaluate: Callable[[], torch.Tensor],
    budget: int,
    history: int = 50,
    first_step: float = 1.0,
    bounds: tuple[float, float] | None = None,
) -> None:
    """Minimise in place over the leaf tensor ``x`` with ``budget`` calls of ``evaluate``.

    ``evaluate`` computes the objective at the current ``x`` and its gradient into
    ``x.grad``. The first step goes down the gradient until some element of ``x`` moves by
    ``first_step``; every later one is a full quasi-Newton step. With ``bounds``, every
    iterate is clipped into them and the curvature pair records the step actually taken.
    """
    memory = LBFGSMemory(history, x.numel(), x.detach().reshape(-1))
    previous_grad: torch.Tensor | None = None
    previous_step: torch.Tensor | None = None
    for _ in range(budget):
        evaluate()
        grad = x.grad.detach().reshape(-1).clone()
        if previous_grad is None:
            step = -grad * (first_step / grad.abs().max().clamp_min(1e-12))
        else:
            memory.push(previous_step, grad - previous_grad)
            step = -memory.times_inverse_hessian(grad)
        with torch.no_grad():
            if bounds is None:
                x.add_(step.view_as(x))
            else:
                before = x.detach().reshape(-1).clone()
                x.add_(step.view_as(x)).clamp_(*bounds)
                step = x.detach().reshape(-1) - before
        previous_grad, previous_step = grad, step
