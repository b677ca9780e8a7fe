"""Loss terms reach progress reports and summaries through a copy the loop never waits on."""

from __future__ import annotations

import torch

from nst_engine import transfer
from nst_engine.readback import LossCopy
from nst_engine.request import LossTerms


def test_a_loss_copy_keeps_the_values_it_was_made_from():
    values = torch.tensor([1.0, 2.0, 3.0, 6.0])
    copy = LossCopy(values)
    values.fill_(9.0)  # a replayed CUDA graph overwrites its output buffer in place like this
    assert copy.ready()
    assert copy.terms() == LossTerms(content=1.0, style=2.0, tv=3.0, total=6.0)


class SlowCopy(LossCopy):
    """A copy that lands only when the test says so, as a CUDA copy lands when the device gets there."""

    landed = False

    def ready(self) -> bool:
        return SlowCopy.landed


def test_a_report_waits_for_its_losses_without_holding_the_loop_up(monkeypatch):
    monkeypatch.setattr(transfer, "LossCopy", SlowCopy)
    monkeypatch.setattr(SlowCopy, "landed", False)
    seen = []
    run = transfer._Run(12, seen.append, 2, None, None)
    buffer = torch.zeros(4)  # one output buffer for every step, as with CUDA graphs

    def evaluate(times: int) -> None:
        for _ in range(times):
            buffer.fill_(run.evaluations + 1.0)
            run.evaluated(buffer, lambda: buffer)

    evaluate(5)  # the report of evaluation 2 waits; none starts meanwhile
    assert seen == []
    SlowCopy.landed = True
    evaluate(1)  # it is sent as of evaluation 2; the next is due from evaluation 8
    evaluate(2)
    SlowCopy.landed = False
    evaluate(2)  # evaluation 10's report waits...
    run.flush()  # ...until the job ends
    assert [(p.iteration, p.total, p.losses.total) for p in seen] == [(2, 12, 2.0), (8, 12, 8.0), (10, 12, 10.0)]
    assert run.initial_terms().total == 1.0
