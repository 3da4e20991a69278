"""The training-step peak of seeded generated models (tests/generated_models.py) against MemTracker.

Beyond the fixtures: CNNs, MLPs and sequence models drawn at random, in float32 and
under AMP bf16, each within 3% of what PyTorch measures. benchmarks/generated_accuracy.py
runs more seeds and prints the distribution.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
import generated_models  # noqa: E402

SEEDS = range(120)
TOLERANCE = 0.03


@pytest.mark.parametrize("dtype", ["float32", "amp-bf16"])
@pytest.mark.parametrize("seed", SEEDS)
def test_generated_model_peak(seed, dtype):
    outcome = generated_models.run(seed, dtype)
    assert abs(outcome.error) <= TOLERANCE, (
        f"{outcome.model.name} [{outcome.optimizer}, {dtype}]: estimate {outcome.estimate:,} B vs measured "
        f"{outcome.measured:,} B, {outcome.error:+.2%} (estimated peak at {outcome.phase})\n{outcome.model.source}")


def test_the_generator_covers_every_family():
    assert {generated_models.generate(seed).family for seed in SEEDS} == {"cnn", "mlp", "sequence", "decoder",
                                                                         "conv1d"}
