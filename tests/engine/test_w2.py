"""The W2 style loss: its matrix square root, its value and its gradient, on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from nst_engine.losses import GaussianTarget, sqrtm_newton_schulz, w2_squared, w2_style_loss


def _gaussian_target(features: torch.Tensor) -> GaussianTarget:
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return GaussianTarget(features.mean(dim=(2, 3)), flat @ flat.mT / (h * w))


def _exact_w2(features: torch.Tensor, style: torch.Tensor) -> float:
    """The closed form through eigendecompositions, in double precision."""

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x[0].reshape(x.shape[1], -1).double()
        mean = flat.mean(1)
        centred = flat - mean[:, None]
        return mean, centred @ centred.T / flat.shape[1]

    def sqrtm(matrix: torch.Tensor) -> torch.Tensor:
        values, vectors = torch.linalg.eigh(matrix)
        return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T

    mean, covariance = stats(features)
    style_mean, style_covariance = stats(style)
    root = sqrtm(style_covariance)
    cross = torch.trace(sqrtm(root @ covariance @ root))
    return float((mean - style_mean).square().sum() + torch.trace(covariance + style_covariance) - 2 * cross)


def test_newton_schulz_gives_the_square_root_and_its_inverse():
    x = torch.randn(2, 6, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    matrix = x @ x.mT / 30
    root, inverse_root = sqrtm_newton_schulz(matrix, 30)
    torch.testing.assert_close(root @ root, matrix)
    torch.testing.assert_close(root @ inverse_root, torch.eye(6, dtype=torch.float64).expand(2, 6, 6))


@pytest.mark.parametrize("shape", [(1, 6, 5, 8), (1, 40, 3, 4)], ids=["more-pixels", "fewer-pixels-than-channels"])
def test_w2_is_zero_for_identical_statistics_and_positive_otherwise(shape):
    generator = torch.Generator().manual_seed(1)
    style = torch.rand(shape, generator=generator)
    target = _gaussian_target(style)
    assert abs(w2_squared(style, target).item()) < 1e-4 * target.covariance_trace.item()
    # The same pixels in another order have the same mean and covariance.
    shuffled = style.flatten(2)[..., torch.randperm(shape[2] * shape[3], generator=generator)].reshape(shape)
    assert abs(w2_squared(shuffled, target).item()) < 1e-4 * target.covariance_trace.item()
    for other in (style + 0.3, style * 1.5, torch.rand(shape, generator=generator)):
        assert w2_squared(other, target).item() > 1e-3
        assert w2_squared(other, target).item() == pytest.approx(_exact_w2(other, style), rel=0.02, abs=1e-4)


def test_w2_gradient_matches_finite_differences():
    generator = torch.Generator().manual_seed(2)
    target = _gaussian_target(torch.rand(1, 5, 4, 4, dtype=torch.float64, generator=generator))
    features = torch.rand(1, 5, 4, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: w2_squared(x, target), (features,), atol=1e-5)


def test_w2_falls_under_optimisation():
    generator = torch.Generator().manual_seed(3)
    target = _gaussian_target(torch.rand(1, 8, 6, 6, generator=generator) * 2 + 1)
    features = torch.rand(1, 8, 6, 6, generator=generator).requires_grad_(True)
    optimiser = torch.optim.Adam([features], lr=0.05)
    first = w2_style_loss({"a": features}, {"a": target}, {"a": 1.0}).item()
    for _ in range(100):
        optimiser.zero_grad()
        loss = w2_style_loss({"a": features}, {"a": target}, {"a": 1.0})
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.05 * first
