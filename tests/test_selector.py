"""ResolutionSelector against the paper's eqs. 5-6 and appendix B, computed by hand."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from arl_fast import ResolutionSelector


def softmax(xs):
    exps = [math.exp(x) for x in xs]
    return [e / sum(exps) for e in exps]


def test_first_measurement_is_uniform():
    selector = ResolutionSelector(seed=0)
    selector.observe([4.0, 2.0, 1.0, 0.5])
    np.testing.assert_allclose(selector.probabilities(), [0.25] * 4)


def test_probabilities_follow_eq5_by_hand():
    selector = ResolutionSelector(seed=0)
    selector.observe([5.0, 3.0, 1.0])  # level 0 finest -> aligned [1.0, 3.0, 5.0]
    selector.observe([4.0, 3.5, 0.7])  # aligned [0.7, 3.5, 4.0]
    expected = softmax([0.7 - 1.0, 3.5 - 3.0, 4.0 - 5.0])
    np.testing.assert_allclose(selector.probabilities(), expected, rtol=1e-12)
    selector.observe([4.5, 3.0, 0.2])
    expected = softmax([0.2 - 0.7, 3.0 - 3.5, 4.5 - 4.0])
    np.testing.assert_allclose(selector.probabilities(), expected, rtol=1e-12)


def test_temperature_divides_the_changes():
    selector = ResolutionSelector(seed=0, temperature=0.25)
    selector.observe([2.0, 1.0])
    selector.observe([1.0, 1.5])
    expected = softmax([(1.5 - 1.0) / 0.25, (1.0 - 2.0) / 0.25])
    np.testing.assert_allclose(selector.probabilities(), expected, rtol=1e-12)


def test_relative_score_divides_by_previous_loss():
    selector = ResolutionSelector(seed=0, score="relative")
    selector.observe([8.0, 2.0])
    selector.observe([6.0, 1.5])
    expected = softmax([(1.5 - 2.0) / 2.0, (6.0 - 8.0) / 8.0])
    np.testing.assert_allclose(selector.probabilities(), expected, rtol=1e-12)


def test_alignment_counts_from_the_coarsest_resolution():
    selector = ResolutionSelector(seed=0)
    selector.observe([3.0, 2.0, 1.0])  # aligned [1, 2, 3]
    selector.observe([9.0, 2.5, 1.5, 0.5])  # aligned [0.5, 1.5, 2.5, 9.0]; aligned 3 is new
    expected = softmax([0.5 - 1.0, 1.5 - 2.0, 2.5 - 3.0, 0.0])
    np.testing.assert_allclose(selector.probabilities(), expected, rtol=1e-12)
    assert selector.values == [0.5, 1.5, 2.5, 9.0]


def test_absent_resolutions_keep_their_value_and_get_no_probability():
    selector = ResolutionSelector(seed=0)
    selector.observe([4.0, 3.0, 2.0, 1.0])  # aligned [1, 2, 3, 4]
    selector.observe([1.5, 0.5])  # aligned [0.5, 1.5]; 2 and 3 absent
    probs = selector.probabilities()
    np.testing.assert_allclose(probs, softmax([0.5 - 1.0, 1.5 - 2.0]) + [0.0, 0.0], rtol=1e-12)
    assert probs.sum() == pytest.approx(1.0)
    assert selector.values == [0.5, 1.5, 3.0, 4.0]
    # the absent resolutions' changes are taken against their last recorded values
    selector.observe([3.5, 2.0, 1.0, 0.25])  # aligned [0.25, 1.0, 2.0, 3.5]
    expected = softmax([0.25 - 0.5, 1.0 - 1.5, 2.0 - 3.0, 3.5 - 4.0])
    np.testing.assert_allclose(selector.probabilities(), expected, rtol=1e-12)
    # never drawn: absent resolutions cannot be sampled
    selector.observe([0.1])
    assert {selector.sample() for _ in range(50)} == {0}


def test_observe_accepts_tensors_and_arrays():
    a, b = ResolutionSelector(seed=0), ResolutionSelector(seed=0)
    a.observe(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64, requires_grad=True))
    b.observe(np.array([3.0, 2.0, 1.0]))
    a.observe(torch.tensor([2.0, 2.5, 0.5]))
    b.observe([2.0, 2.5, 0.5])
    np.testing.assert_allclose(a.probabilities(), b.probabilities(), rtol=1e-12)


def test_draw_frequencies_match_probabilities():
    selector = ResolutionSelector(seed=1234)
    selector.observe([5.0, 4.0, 3.0, 2.0, 1.0])
    selector.observe([4.0, 4.5, 3.2, 1.0, 1.1])
    probs = selector.probabilities()
    assert probs.max() / probs.min() > 3  # a distribution far from uniform
    n = 20000
    counts = np.bincount([selector.sample() for _ in range(n)], minlength=len(probs))
    assert chisquare(counts, probs * n).pvalue > 0.01
    # the same test rejects draws from the wrong distribution
    assert chisquare(counts, np.full(len(probs), n / len(probs))).pvalue < 1e-6


def test_sample_returns_int_and_is_seeded():
    def draws(seed):
        selector = ResolutionSelector(seed=seed)
        selector.observe([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
        return [selector.sample() for _ in range(30)]

    assert all(type(d) is int for d in draws(3))
    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_uniform_draw_before_any_measurement():
    selector = ResolutionSelector(seed=5)
    counts = np.bincount([selector.sample(n_resolutions=4) for _ in range(8000)], minlength=4)
    assert len(counts) == 4
    assert chisquare(counts).pvalue > 0.01


def test_level_for_maps_aligned_to_level():
    assert ResolutionSelector.level_for(0, 5) == 4  # coarsest
    assert ResolutionSelector.level_for(4, 5) == 0  # finest
    assert ResolutionSelector.level_for(2, 5) == 2
    assert ResolutionSelector.level_for(7, 5) == 0  # crop too short: its finest level
    assert ResolutionSelector.level_for(0, 1) == 0


def test_state_round_trip_resumes_the_same_draws():
    losses = [[5.0, 3.0, 2.0, 1.0], [4.0, 3.1, 1.5], [4.2, 2.0, 1.9, 0.9, 0.1], [3.0, 2.2, 1.0, 0.8]]
    full = ResolutionSelector(seed=7)
    full.observe(losses[0])
    full.observe(losses[1])
    state = full.state_dict()
    expected = []
    for measurement in losses[2:]:
        expected.append([full.sample() for _ in range(5)])
        full.observe(measurement)
    expected.append([full.sample() for _ in range(5)])

    resumed = ResolutionSelector(seed=999)
    resumed.load_state_dict(state)
    got = []
    for measurement in losses[2:]:
        got.append([resumed.sample() for _ in range(5)])
        resumed.observe(measurement)
    got.append([resumed.sample() for _ in range(5)])
    assert got == expected
    np.testing.assert_array_equal(resumed.probabilities(), full.probabilities())
    assert resumed.num_observations == full.num_observations == 4


def test_state_dict_is_a_copy():
    selector = ResolutionSelector(seed=0)
    selector.observe([2.0, 1.0])
    state = selector.state_dict()
    selector.observe([1.0, 0.5])
    assert state["values"] == [1.0, 2.0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_names_the_level(bad):
    selector = ResolutionSelector(seed=0)
    with pytest.raises(ValueError, match=r"level 2"):
        selector.observe([1.0, 2.0, bad, 3.0])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"temperature": float("inf")}, ValueError, "temperature"),
        ({"temperature": "1"}, TypeError, "temperature"),
        ({"seed": -1}, TypeError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"score": "ratio"}, ValueError, "score"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ResolutionSelector(**kwargs)


def test_bad_measurements_and_calls():
    selector = ResolutionSelector(seed=0)
    with pytest.raises(RuntimeError, match="observe"):
        selector.probabilities()
    with pytest.raises(RuntimeError, match="n_resolutions"):
        selector.sample()
    with pytest.raises(ValueError, match="n_resolutions"):
        selector.sample(n_resolutions=0)
    with pytest.raises(ValueError, match="level_losses"):
        selector.observe([])
    with pytest.raises(ValueError, match="level_losses"):
        selector.observe([[1.0, 2.0]])
    with pytest.raises(TypeError, match="level_losses"):
        selector.observe(["a", "b"])
    selector.observe([1.0])
    with pytest.raises(ValueError, match="n_resolutions"):
        selector.sample(n_resolutions=3)
    with pytest.raises(ValueError, match="n_levels"):
        ResolutionSelector.level_for(0, 0)
    with pytest.raises(ValueError, match="aligned"):
        ResolutionSelector.level_for(-1, 3)
    with pytest.raises(TypeError, match="aligned"):
        ResolutionSelector.level_for(1.0, 3)
    with pytest.raises(ValueError, match="missing"):
        selector.load_state_dict({"values": []})
