"""Loss terms read back to the host without making the optimisation loop wait for the device.

On CUDA, reading a tensor's values waits until every kernel queued before it has run, which
empties the queue the host keeps ahead of the GPU. A :class:`LossCopy` instead queues a
non-blocking copy into pinned host memory and records an event behind it; the values are read
once the event says the copy has landed (the caller polls :meth:`LossCopy.ready` at its next
step). On the CPU the copy is made at once and is always ready.
"""

from __future__ import annotations

import torch

from nst_engine.request import LossTerms


class LossCopy:
    """A (content, style, tv, total) 4-vector on its way to the host, as it was when the copy was made."""

    def __init__(self, values: torch.Tensor) -> None:
        values = values.detach()
        self._event: torch.cuda.Event | None = None
        if values.device.type == "cuda":
            self._host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            self._host.copy_(values, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(values.device))
        else:
            self._host = values.clone()

    def ready(self) -> bool:
        """Whether the values have reached the host (reading them now would not wait)."""
        return self._event is None or self._event.query()

    def terms(self) -> LossTerms:
        """The loss terms; waits for the copy if it has not landed yet."""
        if self._event is not None:
            self._event.synchronize()
        content, style, tv, total = self._host.double().tolist()
        return LossTerms(content=content, style=style, tv=tv, total=total)
