"""The training-step memory model against PyTorch's own MemTracker, fixture by fixture.

The truth is one steady-state CPU training step (see torch_oracle.measure_step).
The peak must be within 3%; weights and optimizer state equal what the model and
the optimizer hold; gradients are one per parameter, worked out here from torch's
own parameter count.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
import memory_cases  # noqa: E402
from memory_cases import OPTIMIZERS, cases, run  # noqa: E402

CASES = cases()
TOLERANCE = 0.03
BYTES = {"float32": 4, "amp-bf16": 4, "amp-fp16": 4, "bfloat16": 2, "float16": 2}


def test_the_cases_cover_every_optimizer_and_a_half_precision():
    assert {c.optimizer for c in CASES} == set(OPTIMIZERS)
    assert {"float32", "amp-bf16", "bfloat16"} <= {c.dtype for c in CASES}


# Known gaps, each still measured: strict, so a case that comes within tolerance fails here
# until it is taken off the list.
KNOWN_GAPS: dict = {}  # (model, dtype) -> why its estimate is outside the bound


def _gap(case):
    return KNOWN_GAPS.get((case.model.id, case.dtype)) if case.batch_scale == 1 else None


def _marks(case):
    reason = _gap(case)
    return [pytest.mark.xfail(reason=reason, strict=True)] if reason else []


@pytest.mark.parametrize("case", [pytest.param(c, marks=_marks(c)) for c in CASES], ids=[c.id for c in CASES])
def test_peak_within_tolerance(case):
    outcome = run(case)
    est, truth = outcome.estimate, outcome.measured
    assert abs(outcome.error) <= TOLERANCE, (
        f"peak estimate {est.peak:,} B vs measured {truth.peak:,} B: {outcome.error:+.2%} "
        f"(estimated peak at {est.peak_phase}; measured categories at peak {truth.categories})")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_weights_gradients_and_optimizer_state(case):
    outcome = run(case)
    est, truth = outcome.estimate, outcome.measured
    assert est.weights == truth.weights
    assert est.optimizer == truth.optimizer_state
    # One gradient per parameter, in the parameters' dtype (float32 under AMP).
    assert est.gradients == outcome.param_count * BYTES[case.dtype]


def test_median_error_is_well_under_tolerance():
    errors = [abs(run(c).error) for c in CASES]
    assert memory_cases.median(errors) <= TOLERANCE / 3


def test_known_gaps_name_real_models():
    assert {model for model, _ in KNOWN_GAPS} <= {c.model.id for c in CASES}


def test_every_known_gap_is_a_case():
    """A gap whose case no longer exists would hide nothing and say something false."""
    cases = {(c.model.id, c.dtype) for c in CASES if c.batch_scale == 1}
    assert set(KNOWN_GAPS) <= cases, set(KNOWN_GAPS) - cases
