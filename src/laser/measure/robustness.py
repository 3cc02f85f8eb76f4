"""Robustness: accuracy under adversarial attacks and common corruptions, on the deployed artifact.

Attacks (FGSM, PGD with an L∞ budget ε) need gradients, so they are computed on a differentiable
torch reference (the artifact itself when it is a torch model, else its torch parent/reference) and
the adversarial inputs are then *transferred*: run through the deployed artifact's Runner (ONNX,
INT8, pruned ...). ε is in pixel units on a [0, 1] scale (ε = 0.007 ≈ 2/255, the classic FGSM
example) and converted to the model's input scale with the preprocessing std; adversarial inputs
are clipped to the valid pixel range.

Corruptions follow ImageNet-C's recipes at severities 1-5, applied in pixel space:
Gaussian noise (σ = .08 .12 .18 .26 .38), Gaussian blur (σ in pixels = ImageNet-C's 1 2 3 4 6 scaled to
the image side / 224, but at least .5 .75 1 1.25 1.5 for small images) and brightness (+.1 … +.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from laser.data import Dataset
from laser.errors import ConfigError

NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
BLUR_SIGMA_224 = (1.0, 2.0, 3.0, 4.0, 6.0)
BLUR_SIGMA_MIN = (0.5, 0.75, 1.0, 1.25, 1.5)
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)


class PixelScale:
    """Maps model inputs (N, C, H, W) to [0, 1] pixels and back, from the preprocessing mean/std."""

    def __init__(self, preprocessing: dict[str, Any] | None, channels: int):
        pre = preprocessing or {}
        known = pre.get("type") == "image" and "std" in pre
        self.known = known
        self.mean = np.asarray(pre.get("mean", [0.0] * channels), np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(pre.get("std", [1.0] * channels), np.float32).reshape(1, -1, 1, 1)

    def to_pixels(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean

    def to_inputs(self, p: np.ndarray) -> np.ndarray:
        return ((p - self.mean) / self.std).astype(np.float32)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Valid input range per channel (pixels 0 and 1), broadcastable to (N, C, H, W)."""
        return self.to_inputs(np.zeros_like(self.mean)), self.to_inputs(np.ones_like(self.mean))


# -- attacks on the torch reference -------------------------------------------------------------

def _grad(module: Any, x: Any, y: Any) -> Any:
    import torch
    import torch.nn.functional as F

    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(module(x), y)
        (g,) = torch.autograd.grad(loss, x)
    return g


def _tensors(module: Any, *arrays: np.ndarray) -> list[Any]:
    """numpy arrays as tensors on the module's device (the reference may live on a GPU)."""
    import torch

    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    return [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]


def fgsm(module: Any, x: np.ndarray, y: np.ndarray, eps: float, scale: PixelScale) -> np.ndarray:
    """x + ε·sign(∇x loss), one step, clipped to valid pixels. ε in [0, 1] pixel units."""
    import torch

    xt, yt, lo, hi, std = _tensors(module, x, y, *scale.bounds(), scale.std)
    adv = xt + eps / std * _grad(module, xt, yt).sign()
    if scale.known:
        adv = torch.maximum(torch.minimum(adv, hi), lo)
    return adv.detach().cpu().numpy()


def pgd(module: Any, x: np.ndarray, y: np.ndarray, eps: float, scale: PixelScale, steps: int = 10,
        seed: int = 0) -> np.ndarray:
    """Projected gradient descent (Madry et al.): random start in the ε-ball, ``steps`` signed
    steps of 2.5·ε/steps, each projected back onto the ε-ball and the valid pixel range."""
    import torch

    xt, yt, lo, hi, std = _tensors(module, x, y, *scale.bounds(), scale.std)
    radius = eps / std
    gen = torch.Generator().manual_seed(seed)  # CPU generator: the same start on every device
    adv = xt + (torch.rand(xt.shape, generator=gen).to(xt.device) * 2 - 1) * radius
    for _ in range(steps):
        adv = adv + 2.5 * radius / steps * _grad(module, adv, yt).sign()
        adv = torch.maximum(torch.minimum(adv, xt + radius), xt - radius)
        if scale.known:
            adv = torch.maximum(torch.minimum(adv, hi), lo)
    return adv.detach().cpu().numpy()


# -- corruptions -------------------------------------------------------------------------------

def gaussian_noise(p: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return p + rng.normal(0.0, NOISE_SIGMA[severity - 1], p.shape).astype(np.float32)


def gaussian_blur(p: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    side = max(p.shape[-2:])
    sigma = max(BLUR_SIGMA_MIN[severity - 1], BLUR_SIGMA_224[severity - 1] * side / 224)
    return gaussian_filter(p, sigma=(0, 0, sigma, sigma), mode="reflect")  # blur H, W only


def brightness(p: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return p + BRIGHTNESS[severity - 1]


CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "brightness": brightness,
}


def corrupt(x: np.ndarray, name: str, severity: int, scale: PixelScale, seed: int = 0) -> np.ndarray:
    """Model inputs with corruption ``name`` at ``severity`` (1-5), clipped to [0, 1] pixels."""
    if name not in CORRUPTIONS or not 1 <= severity <= 5:
        raise ConfigError(f"corruption must be one of {sorted(CORRUPTIONS)} at severity 1-5, got {name!r}@{severity}")
    p = scale.to_pixels(x)
    out = CORRUPTIONS[name](p, severity, np.random.default_rng(seed))
    return scale.to_inputs(np.clip(out, 0.0, 1.0) if scale.known else out)


# -- accuracy under each --------------------------------------------------------------------------

def _accuracy(runner: Any, x: np.ndarray, y: np.ndarray, batch: int = 64) -> float:
    name, out = runner.spec.input_names[0], runner.spec.output_names[0]
    hits = 0
    for i in range(0, len(x), batch):
        hits += int((runner({name: np.ascontiguousarray(x[i:i + batch])})[out].argmax(1) == y[i:i + batch]).sum())
    return hits / len(x)


def _attack(attack: Callable[..., np.ndarray], module: Any, eps: float, scale: PixelScale, kw: dict[str, Any],
            x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return attack(module, x, y, eps, scale, **kw)


def _batched(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray,
             batch: int = 64) -> np.ndarray:
    return np.concatenate([fn(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)])


def robustness(runner: Any, data: Dataset, reference: Any | None, epsilons: Sequence[float] = (0.0, 0.007, 0.03, 0.1),
               severities: Sequence[int] = (1, 2, 3, 4, 5), pgd_steps: int = 10, reference_name: str | None = None,
               ) -> tuple[dict[str, Any] | None, dict[str, dict[str, str]]]:
    """(robustness figures, labels) of a classifier on image-shaped float inputs; (None, reason) when the
    model's inputs are not images or the data is unlabelled."""
    spec = runner.spec
    x = data.inputs[0]
    if len(spec.inputs) != 1 or x.ndim != 4 or x.dtype.kind != "f" or data.labels is None:
        return None, {"robustness": {"unit": "", "kind": "skipped", "method": "needs one float image input "
                                     "(N, C, H, W) and labelled data"}}
    y = np.asarray(data.labels, np.int64)
    scale = PixelScale(dict(runner.artifact.preprocessing), x.shape[1])
    clean = _accuracy(runner, x, y)
    out: dict[str, Any] = {"clean": clean, "fgsm": None, "pgd": None, "corruptions": {}, "samples": len(x)}
    sample_note = f"{len(x)} samples of {data.name!r}"
    labels = {"robustness.clean": {"unit": "fraction (0-1)", "kind": "measured",
                                   "method": f"measured: top-1 of the deployed runner on {sample_note}"}}
    if reference is not None:
        reference.eval()
        same = getattr(runner, "module", None) is reference  # the torch runner runs this very module
        transfer = ("white-box on the artifact itself" if same else
                    f"computed on torch reference {reference_name!r}, transferred to the deployed runner")
        unit = "fraction (0-1) per ε (pixel units on [0, 1]" + (", / preprocessing std)" if scale.known else ")")
        for name, attack, kw in (("fgsm", fgsm, {}), ("pgd", pgd, {"steps": pgd_steps})):
            out[name] = {f"{e:g}": _accuracy(runner, _batched(partial(_attack, attack, reference, e, scale, kw), x, y), y)
                         for e in epsilons}
        labels["robustness.fgsm"] = {"unit": unit, "kind": "measured",
                                     "method": f"measured: top-1 under FGSM (L∞, 1 step), {transfer}; {sample_note}"}
        labels["robustness.pgd"] = {"unit": unit, "kind": "measured",
                                    "method": f"measured: top-1 under PGD (L∞, {pgd_steps} steps of 2.5ε/{pgd_steps}, "
                                              f"random start, seed 0), {transfer}; {sample_note}"}
    else:
        labels["robustness.fgsm"] = labels["robustness.pgd"] = {
            "unit": "", "kind": "skipped", "method": "no differentiable torch reference: pass reference= a torch "
                                                     "artifact with the same inputs"}
    for name in CORRUPTIONS:
        for s in severities:
            out["corruptions"][f"{name}@{s}"] = _accuracy(runner, corrupt(x, name, s, scale, seed=s), y)
    labels["robustness.corruptions"] = {"unit": "fraction (0-1) per corruption@severity", "kind": "measured",
                                        "method": "measured: top-1 of the deployed runner under ImageNet-C style "
                                                  f"corruptions (seeded), {sample_note}"}
    out["drop"] = {g: {k: clean - v for k, v in (out[g] or {}).items()} for g in ("fgsm", "pgd", "corruptions")}
    labels["robustness.drop"] = {"unit": "fraction (0-1)", "kind": "measured", "method": "clean - robust accuracy"}
    labels["robustness.samples"] = {"unit": "count", "kind": "counted", "method": f"samples attacked: {sample_note}"}
    return out, labels
