"""helpers.plots.loss_fell, the "model learned" check of lectures 03 and 04: it must say False for
histories that did not fall, and refuse histories too short to judge."""

from __future__ import annotations

import doctest

import pytest

from helpers import plots


def _history(losses):
    return [{"loss": float(v), "step": i + 1} for i, v in enumerate(losses)]


def test_doctests():
    assert doctest.testmod(plots).failed == 0


def test_falling_history():
    assert plots.loss_fell(_history([3.0 - 0.1 * i for i in range(20)]))


def test_flat_history_did_not_fall():
    assert not plots.loss_fell(_history([2.5] * 20))


def test_rising_history_did_not_fall():
    assert not plots.loss_fell(_history([2.0 + 0.05 * i for i in range(20)]))


def test_noisy_flat_history_did_not_fall():
    """Noise around a constant: single first/last values can differ by 20 %, the windows' means do not."""
    noisy = [2.4, 1.6, 2.2, 1.8, 2.0] * 6  # every 5-step window averages 2.0
    assert noisy[-1] < noisy[0] * 0.9  # a check on two single values would wrongly say "fell"
    assert not plots.loss_fell(_history(noisy))


def test_small_drop_below_the_threshold():
    """A 3 % fall passes min_drop=0.02 but not the default 5 %."""
    losses = [1.0] * 5 + [0.97] * 5
    assert plots.loss_fell(_history(losses), min_drop=0.02)
    assert not plots.loss_fell(_history(losses))


def test_too_short_history_is_refused():
    with pytest.raises(ValueError, match="need at least 10 logged losses, got 9"):
        plots.loss_fell(_history([3.0 - 0.1 * i for i in range(9)]))
    with pytest.raises(ValueError, match="got 0"):
        plots.loss_fell([{"eval_loss": 1.0, "step": 1}])  # eval losses are not training losses


def test_shown_name_marks_the_stand_in():
    assert plots.shown_name("Llama 2 7B Chat", "tiny") == "Llama 2 7B Chat (tiny stand-in)"
    assert plots.shown_name("Llama 2 7B Chat", "full") == "Llama 2 7B Chat"
