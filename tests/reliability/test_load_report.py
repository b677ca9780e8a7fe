"""The load script's own invariants: a report that breaks them must say so."""

from __future__ import annotations

from benchmarks.load_test import LoadReport, LoadSettings, Outcome


def test_the_load_report_flags_broken_uploads_that_were_not_refused_and_good_ones_that_were():
    def outcome(kind: str, broken: bool) -> Outcome:
        return Outcome(user=1, kind=kind, finals=1, ack_s=0.1, late_ack=False, broken=broken)

    def failures(*outcomes: Outcome) -> list[str]:
        report = LoadReport(LoadSettings(), list(outcomes), 0, 0, 0, 1.0, 0)
        return report.failures()

    assert failures(outcome("image", False), outcome("refused: bad_image", True), outcome("refused: cooldown", True)) == []
    assert failures(outcome("image", True)) == [
        "1 broken uploads were not refused as broken (nor refused before being looked at)"
    ]
    assert failures(outcome("refused: bad_image", False)) == ["a good upload was refused as a broken image"]
