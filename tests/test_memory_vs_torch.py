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


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.xfail(reason=memory_cases.KNOWN_GAPS[c.id], strict=True))
    if c.id in memory_cases.KNOWN_GAPS else c for c in CASES], ids=[c.id for c in CASES])
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
    """Over the cases PyTorch can run on this CPU (the others are skipped above, with the reason)."""
    ran, refused = memory_cases.outcomes(CASES)
    assert len(ran) > len(CASES) // 2, f"only {len(ran)} of {len(CASES)} cases ran on this CPU"
    errors = [abs(o.error) for o in ran]
    assert memory_cases.median(errors) <= TOLERANCE / 3, (
        f"median |error| {memory_cases.median(errors):.2%} over the {len(ran)} of {len(CASES)} cases that ran "
        f"({refused} refused by PyTorch on this CPU)")
