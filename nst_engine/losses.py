"""The three terms of Gatys et al.'s objective.

With a single style image these are exactly the terms of the ``pastiche`` package, so both
can be configured identically and scored by one evaluator:

- content: ``sum_l a_l * mean((F_l - P_l) ** 2)``
- style:   ``sum_l w_l * mean((G(F_l) - G(S_l)) ** 2)`` with ``G(F) = F F^T / (h * w)``
- tv:      ``mean|x[..., 1:] - x[..., :-1]| + mean|x[..., 1:, :] - x[..., :-1, :]|`` on RGB [0, 1]
  (pastiche takes it on 0-255 pixels and halves it, so its tv weight ``t`` is our ``127.5 * t``)

Several styles are blended by mixing their Gram matrices with weights summing to one; the
gradient is the same as for the weighted sum of per-style losses, at the cost of one.
"""

from __future__ import annotations

import torch


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
    features: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor], weights: dict[str, float]
) -> torch.Tensor:
    """Weighted mean squared error between Gram matrices and the style's, summed over layers."""
    terms = [weights[name] * torch.mean((gram(features[name]) - target) ** 2) for name, target in target_grams.items()]
    return torch.stack(terms).sum()


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean absolute difference between horizontal and vertical neighbours."""
    horizontal = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    vertical = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    return horizontal + vertical
