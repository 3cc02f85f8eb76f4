import itertools

import numpy as np
import pytest

from laser.measure.robustness import CORRUPTIONS, PixelScale, corrupt, fgsm, pgd, robustness
from laser.runtime import run


@pytest.fixture(scope="module")
def small_digits(digits_test):
    return digits_test.take(120)


@pytest.fixture(scope="module")
def rob(digits_artifact, small_digits):
    with run(digits_artifact, backend="torch") as runner:
        return robustness(runner, small_digits, digits_artifact.module, epsilons=(0.0, 0.007, 0.05, 0.1, 0.2),
                          severities=(1, 5), pgd_steps=5, reference_name=digits_artifact.name)


def test_fgsm_and_pgd_at_eps_zero_equal_clean_accuracy(rob):
    out, _ = rob
    assert out["fgsm"]["0"] == out["clean"] == out["pgd"]["0"]
    assert out["clean"] > 0.95


def test_accuracy_does_not_rise_with_eps_on_digits_cnn(rob):
    out, _ = rob
    for attack in ("fgsm", "pgd"):
        accs = [out[attack][k] for k in sorted(out[attack], key=float)]
        assert all(b <= a for a, b in itertools.pairwise(accs)), (attack, accs)
        assert accs[-1] < out["clean"] - 0.3  # ε = 0.2 breaks the model
    assert "0.007" in out["fgsm"]


def test_pgd_is_at_least_as_strong_as_fgsm(rob):
    out, _ = rob
    assert out["pgd"]["0.2"] <= out["fgsm"]["0.2"] + 0.02


def test_severe_corruptions_hurt_and_drops_are_reported(rob):
    out, labels = rob
    for name in CORRUPTIONS:
        assert out["corruptions"][f"{name}@5"] < out["clean"]
        assert out["drop"]["corruptions"][f"{name}@5"] == pytest.approx(out["clean"] - out["corruptions"][f"{name}@5"])
    for key in ("robustness.clean", "robustness.fgsm", "robustness.pgd", "robustness.corruptions"):
        assert labels[key]["unit"] and labels[key]["method"] and labels[key]["kind"] == "measured"
    assert "white-box" in labels["robustness.fgsm"]["method"]


def test_adversarial_inputs_stay_in_the_eps_ball_and_valid_pixel_range(digits_artifact, small_digits):
    x, y = small_digits.inputs[0][:16], small_digits.labels[:16]
    scale = PixelScale(dict(digits_artifact.preprocessing), 1)
    for attack in (fgsm, pgd):
        adv = attack(digits_artifact.module, x, y, 0.1, scale)
        pixels = scale.to_pixels(adv)
        assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
        assert np.abs(scale.to_pixels(adv) - scale.to_pixels(x)).max() <= 0.1 + 1e-5


def test_corruptions_are_seeded_and_in_range(digits_artifact, small_digits):
    x = small_digits.inputs[0][:8]
    scale = PixelScale(dict(digits_artifact.preprocessing), 1)
    a, b = corrupt(x, "gaussian_noise", 3, scale, seed=1), corrupt(x, "gaussian_noise", 3, scale, seed=1)
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert scale.to_pixels(corrupt(x, "brightness", 5, scale)).max() <= 1 + 1e-6
    blurred = corrupt(x, "gaussian_blur", 5, scale)
    assert blurred.std() < x.std()


class CountingRunner:
    """Wraps a runner and records every batch it is given (the deployed artifact)."""

    def __init__(self, inner):
        self.inner, self.spec, self.artifact, self.seen = inner, inner.spec, inner.artifact, []

    def __call__(self, feeds):
        self.seen.append(feeds["input"].copy())
        return self.inner(feeds)


def test_attacks_are_computed_on_the_reference_and_run_on_the_deployed_runner(digits_artifact, small_digits):
    import laser

    other = laser.load("digits-cnn", random_weights=True)  # a different deployed model, same inputs
    with run(other, backend="torch") as inner:
        runner = CountingRunner(inner)
        out, labels = robustness(runner, small_digits.take(32), digits_artifact.module, epsilons=(0.1,),
                                 severities=(1,), pgd_steps=2, reference_name="digits-cnn")
    assert "transferred" in labels["robustness.fgsm"]["method"]
    clean = small_digits.inputs[0][:32]
    # clean + FGSM + PGD + 3 corruptions, each one batch of 32
    assert len(runner.seen) == 6 and not np.array_equal(runner.seen[1], clean)
    assert 0 <= out["fgsm"]["0.1"] <= 1


def test_without_a_reference_only_corruptions_are_measured(digits_artifact, small_digits):
    with run(digits_artifact, backend="torch") as runner:
        out, labels = robustness(runner, small_digits.take(16), None, severities=(1,))
    assert out["fgsm"] is None and out["pgd"] is None and len(out["corruptions"]) == len(CORRUPTIONS)
    assert labels["robustness.fgsm"]["kind"] == "skipped"
