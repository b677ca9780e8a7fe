"""The sync-free L-BFGS against the textbook two-loop recursion."""

from __future__ import annotations

import torch

from nst_engine.lbfgs import LBFGSMemory, minimise


def two_loop(pairs: list[tuple[torch.Tensor, torch.Tensor]], g: torch.Tensor) -> torch.Tensor:
    """Nocedal & Wright, Algorithm 7.4, skipping pairs with s.y <= 0 as torch.optim.LBFGS does."""
    pairs = [(s, y) for s, y in pairs if torch.dot(s, y) > 1e-10]
    q = g.clone()
    alphas = []
    for s, y in reversed(pairs):
        alpha = torch.dot(s, q) / torch.dot(s, y)
        q -= alpha * y
        alphas.append(alpha)
    s_last, y_last = pairs[-1]
    r = q * torch.dot(s_last, y_last) / torch.dot(y_last, y_last)
    for (s, y), alpha in zip(pairs, reversed(alphas)):
        beta = torch.dot(y, r) / torch.dot(s, y)
        r += s * (alpha - beta)
    return r


def test_compact_product_equals_two_loop_recursion():
    generator = torch.Generator().manual_seed(0)
    n, size = 40, 5
    hessian = torch.randn(n, n, generator=generator, dtype=torch.float64)
    hessian = hessian @ hessian.T + n * torch.eye(n, dtype=torch.float64)
    memory = LBFGSMemory(size, n, torch.zeros(n, dtype=torch.float64))
    pairs = []
    for step in range(9):  # more pairs than slots: the ring wraps around
        s = torch.randn(n, generator=generator, dtype=torch.float64)
        y = hessian @ s
        if step == 6:
            y = -y  # negative curvature: must be ignored
        memory.push(s, y)
        pairs.append((s, y))
        g = torch.randn(n, generator=generator, dtype=torch.float64)
        expected = two_loop(pairs[-size:], g)
        torch.testing.assert_close(memory.times_inverse_hessian(g), expected)


def test_minimise_solves_a_quadratic_in_the_budget():
    generator = torch.Generator().manual_seed(1)
    n = 30
    a = torch.randn(n, n, generator=generator)
    hessian = a @ a.T + torch.eye(n)
    target = torch.randn(n, generator=generator)
    x = torch.zeros(n, requires_grad=True)
    calls = []

    def evaluate() -> torch.Tensor:
        x.grad = None
        loss = 0.5 * (x - target) @ hessian @ (x - target)
        loss.backward()
        calls.append(loss.item())
        return loss

    minimise(x, evaluate, budget=60, history=10)
    assert len(calls) == 60
    assert calls[-1] < 1e-6 * calls[0]
    torch.testing.assert_close(x.detach(), target, rtol=1e-3, atol=1e-3)


def test_first_step_moves_the_largest_element_by_first_step():
    x = torch.zeros(3, requires_grad=True)

    def evaluate() -> torch.Tensor:
        x.grad = None
        loss = (x * torch.tensor([1.0, -4.0, 2.0])).sum()
        loss.backward()
        return loss

    minimise(x, evaluate, budget=1, first_step=2.0)
    torch.testing.assert_close(x.detach(), torch.tensor([-0.5, 2.0, -1.0]))


def test_bounds_keep_every_iterate_inside_and_reach_the_clipped_optimum():
    target = torch.tensor([-2.0, 0.5, 3.0, 0.9])
    x = torch.full((4,), 0.5, requires_grad=True)
    seen = []

    def evaluate() -> torch.Tensor:
        seen.append(x.detach().clone())
        x.grad = None
        loss = ((x - target) ** 2 * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum()
        loss.backward()
        return loss

    minimise(x, evaluate, budget=40, history=5, first_step=0.1, bounds=(0.0, 1.0))
    assert all(point.min() >= 0.0 and point.max() <= 1.0 for point in seen)
    torch.testing.assert_close(x.detach(), torch.tensor([0.0, 0.5, 1.0, 0.9]), atol=1e-3, rtol=0)
