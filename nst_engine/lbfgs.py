"""L-BFGS for a fixed budget of objective evaluations, without host-device syncs.

torch.optim.LBFGS reads loss and gradient values on the host every iteration (tolerance
tests, curvature checks), which stalls a GPU, and it walks its history one pair at a time.
Here the inverse-Hessian product uses the compact representation of Byrd, Nocedal and
Schnabel (1994): a handful of matrix-vector products and two small triangular solves,
whatever the history length. Pairs that fail the curvature condition are zeroed on the
device rather than skipped, which removes them from the product exactly.

As in Gatys et al.'s and pastiche's use of L-BFGS there is no line search: every step has
length one, and every iteration costs exactly one evaluation.

All state lives on the device and is updated in place (the ring position too), so that after
the first, eager step one step is the same sequence of kernels every time: CUDA graphs can
capture it once and replay it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

CURVATURE_EPS = 1e-10


@contextlib.contextmanager
def exact_matmul() -> Iterator[None]:
    """Full fp32 products inside: TF32's 10-bit mantissa is fine for convolutions, not for the
    dot products L-BFGS builds its curvature model from."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


class LBFGSMemory:
    """The last ``size`` curvature pairs (s, y) of an n-dimensional problem, in a ring.

    The pairs are the rows of one (2 * size, n) matrix, s's above y's, so that one matrix
    product gives every dot product a step needs.
    """

    def __init__(self, size: int, n: int, like: torch.Tensor) -> None:
        self.size = size
        self.pairs = like.new_zeros(2 * size, n)
        self.s = self.pairs[:size]
        self.y = self.pairs[size:]
        self.sy = like.new_zeros(size, size)  # sy[i, j] = s_i . y_j
        self.yy = like.new_zeros(size, size)  # yy[i, j] = y_i . y_j
        self.gamma = like.new_ones(())  # initial inverse Hessian scale, s.y / y.y of the last good pair
        self.position = torch.zeros((), dtype=torch.long, device=like.device)  # pairs pushed so far
        self.slots = torch.arange(size, device=like.device)

    @property
    def stored(self) -> int:
        """Pairs pushed so far (reading it syncs with the device)."""
        return int(self.position)

    def push(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Remember a step ``s`` and its gradient change ``y``; a pair with s.y <= 0 counts as zero."""
        with exact_matmul():
            sy = torch.dot(s, y)
            good = sy > CURVATURE_EPS
            keep = good.to(s.dtype)
            slot = (self.position % self.size).view(1)
            self.s.index_copy_(0, slot, (s * keep).unsqueeze(0))
            self.y.index_copy_(0, slot, (y * keep).unsqueeze(0))
            # Column 0: every stored s and y dotted with the new s; column 1: with the new y.
            products = self.pairs @ self.pairs.index_select(0, torch.cat([slot, slot + self.size])).T
            self.sy.index_copy_(0, slot, products[self.size :, 0].unsqueeze(0))
            self.sy.index_copy_(1, slot, products[: self.size, 1].unsqueeze(1))
            self.yy.index_copy_(0, slot, products[self.size :, 1].unsqueeze(0))
            self.yy.index_copy_(1, slot, products[self.size :, 1].unsqueeze(1))
            self.gamma.copy_(torch.where(good, sy / torch.dot(y, y).clamp_min(CURVATURE_EPS), self.gamma))
            self.position.add_(1)

    def times_inverse_hessian(self, g: torch.Tensor) -> torch.Tensor:
        """H g for the L-BFGS inverse Hessian approximation H built from the stored pairs."""
        with exact_matmul():
            # Chronological order of the ring's slots, oldest first; empty slots are zero pairs.
            order = (self.slots + self.position) % self.size
            sy = self.sy[order][:, order]
            yy = self.yy[order][:, order]
            diagonal = torch.diagonal(sy)
            # Zeroed pairs get a unit diagonal so R stays invertible; their rows and columns are
            # zero elsewhere, so they drop out of the product.
            r = torch.triu(sy, diagonal=1) + torch.diag(torch.where(diagonal > 0, diagonal, torch.ones_like(diagonal)))
            products = self.pairs @ g
            a = products[: self.size][order]
            b = products[self.size :][order]
            u = torch.linalg.solve_triangular(r, a.unsqueeze(1), upper=True).squeeze(1)
            v = diagonal * u + self.gamma * (yy @ u) - self.gamma * b
            top = torch.linalg.solve_triangular(r.T, v.unsqueeze(1), upper=False).squeeze(1)
            coefficients = torch.empty(2 * self.size, dtype=g.dtype, device=g.device)
            coefficients[order] = top
            coefficients[order + self.size] = -self.gamma * u
            return self.gamma * g + coefficients @ self.pairs


class LBFGS:
    """One L-BFGS run over the leaf tensor ``x``: call ``update`` after each evaluation.

    ``update`` reads the gradient the evaluation left in ``x.grad`` and moves ``x``. The first
    update goes down the gradient until some element of ``x`` moves by ``first_step``; every
    later one is a full quasi-Newton step, and is the same kernels every time (graph-capturable).
    With ``bounds``, every iterate is clipped into them and the curvature pair records the step
    actually taken.
    """

    def __init__(
        self, x: torch.Tensor, history: int = 50, first_step: float = 1.0, bounds: tuple[float, float] | None = None
    ) -> None:
        flat = x.detach().reshape(-1)
        self.x = x
        self.first_step = first_step
        self.bounds = bounds
        self.memory = LBFGSMemory(history, x.numel(), flat)
        self.previous_grad = torch.zeros_like(flat)
        self.previous_step = torch.zeros_like(flat)
        self.started = False

    def update(self) -> None:
        """Take one step from the gradient in ``x.grad``."""
        grad = self.x.grad.detach().reshape(-1)
        if not self.started:
            step = -grad * (self.first_step / grad.abs().max().clamp_min(1e-12))
            self.started = True
        else:
            self.memory.push(self.previous_step, grad - self.previous_grad)
            step = -self.memory.times_inverse_hessian(grad)
        with torch.no_grad():
            if self.bounds is None:
                self.x.add_(step.view_as(self.x))
            else:
                before = self.x.detach().reshape(-1).clone()
                self.x.add_(step.view_as(self.x)).clamp_(*self.bounds)
                step = self.x.detach().reshape(-1) - before
        self.previous_grad.copy_(grad)
        self.previous_step.copy_(step)


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
    ``x.grad``; the steps are those of :class:`LBFGS`.
    """
    optimiser = LBFGS(x, history, first_step, bounds)
    for _ in range(budget):
        evaluate()
        optimiser.update()
