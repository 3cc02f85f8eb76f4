import numpy as np
import pytest

import laser
from laser import data
from laser.errors import ConfigError
from laser.measure.accuracy import classification


def test_splits_are_deterministic_disjoint_and_normalised():
    x1, y1 = data.digits("train")
    x2, _ = data.digits("train")
    xt, yt = data.digits("test")
    assert (x1 == x2).all()
    assert x1.dtype == np.float32 and x1.shape[1:] == (1, 8, 8) and y1.dtype == np.int64
    assert x1.min() >= -1.0 and x1.max() <= 1.0
    assert len(x1) + len(data.digits("val")[0]) + len(xt) == 1797
    assert set(yt.tolist()) == set(range(10))


def test_unknown_split_is_rejected():
    with pytest.raises(ConfigError, match="unknown split"):
        data.digits("dev")


def test_builtin_digits_cnn_reaches_97_percent_on_the_test_split(digits_artifact, digits_test):
    result = classification(laser.run(digits_artifact), digits_test)
    assert result["top1"] >= 0.97


def test_builtin_weights_are_well_under_one_megabyte(digits_artifact):
    assert digits_artifact.bytes < 1_000_000


def test_training_from_scratch_is_seeded_and_accurate(tmp_path):
    from laser.compress.train import TrainConfig, evaluate_top1, fit
    from laser.models.digits import digits_cnn

    cfg = TrainConfig(epochs=3, progress=False, logdir=str(tmp_path / "tb"))
    import torch

    torch.manual_seed(0)
    a = digits_cnn()
    torch.manual_seed(0)
    b = digits_cnn()
    fit(a, data.load("digits", "train"), data.load("digits", "val"), cfg)
    fit(b, data.load("digits", "train"), data.load("digits", "val"), cfg)
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters()))
    assert evaluate_top1(a, data.load("digits", "test")) > 0.8
    assert any((tmp_path / "tb").iterdir()), "TensorBoard event file written"


def test_training_resumes_from_a_checkpoint(tmp_path):
    from laser.compress.train import TrainConfig, cross_entropy, fit
    from laser.models.digits import digits_cnn

    train, val = data.load("digits", "train").take(200), data.load("digits", "val")
    import torch

    torch.manual_seed(1)
    full = digits_cnn()
    fit(full, train, val, TrainConfig(epochs=4, progress=False, patience=None))
    torch.manual_seed(1)
    part = digits_cnn()
    ckpt = str(tmp_path / "ckpt")
    calls = {"n": 0}

    def interrupted_in_third_epoch(module, xs, labels):
        calls["n"] += 1
        if calls["n"] > 2 * 7:  # 200 samples / batch 32 = 7 batches an epoch
            raise KeyboardInterrupt
        return cross_entropy(module, xs, labels)

    cfg = TrainConfig(epochs=4, progress=False, patience=None, checkpoint=ckpt)
    with pytest.raises(KeyboardInterrupt):
        fit(part, train, val, cfg, loss_fn=interrupted_in_third_epoch)
    resumed = digits_cnn()
    result = fit(resumed, train, val, cfg)
    assert result.epochs_run == 4 and len(result.history) == 4
    assert all(np.allclose(p.detach(), q.detach(), atol=1e-5) for p, q in zip(full.parameters(), resumed.parameters()))
