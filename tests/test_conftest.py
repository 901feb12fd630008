"""The suite-wide settings in tests/conftest.py: seeded generators and Hypothesis profiles."""

import random

import numpy as np
import pytest
import torch
from hypothesis import settings

from tests.conftest import SEED, in_ci


@pytest.mark.parametrize("draw_first", [False, True])
def test_every_test_starts_from_the_fixed_seed(draw_first):
    # the second case draws first, so it would differ from the first if the seed carried over
    expected = (random.Random(SEED).random(), np.random.RandomState(SEED).rand(),
                torch.rand(3, generator=torch.Generator().manual_seed(SEED)))
    assert torch.initial_seed() == SEED
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[:2] == expected[:2]
    assert torch.equal(got[2], expected[2])
    if draw_first:
        torch.rand(100), np.random.rand(100), random.random()


@pytest.mark.parametrize("value, ci", [("", False), ("0", False), ("false", False), ("No", False),
                                       ("true", True), ("1", True), ("yes", True)])
def test_ci_detection(monkeypatch, value, ci):
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_hypothesis_profile():
    s = settings()
    assert s.deadline is None and s.max_examples <= 50
    # CI replays one fixed set of examples; elsewhere each run draws new ones
    assert s.derandomize is in_ci()
