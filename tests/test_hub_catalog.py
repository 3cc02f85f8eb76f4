"""Catalog cards are consistent: every factory builds offline, every spec matches the built model, and
each torchvision factory is the architecture torchvision builds for the card's published weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from laser import hub
from laser.architecture import build_architecture
from laser.hub.catalog import CATALOG, TASKS
from laser.hub.package import PackageFile
from laser.runtime.torch import outputs_to_numpy

# One light model per image task in the default run (each builds and runs in a few seconds); every
# other card is checked in the slow run (`make test-slow`).
LIGHT = ["digits-cnn", "mobilenet_v3_small", "lraspp_mobilenet_v3_large", "ssdlite320_mobilenet_v3_large"]
HEAVY = sorted(set(CATALOG) - set(LIGHT))
FAST_REFERENCE = {"mobilenet_v3_small", "lraspp_mobilenet_v3_large"}


def _param(names: list[str]) -> list:
    return [n if n in FAST_REFERENCE else pytest.param(n, marks=pytest.mark.slow) for n in names]


def check_spec(name: str) -> torch.nn.Module:
    card = CATALOG[name]
    module = build_architecture(card.architecture).eval()
    feeds = card.spec.example_inputs(batch=1)
    with torch.inference_mode():
        out = outputs_to_numpy(module(*(torch.from_numpy(feeds[t.name]) for t in card.spec.inputs)),
                               card.spec.output_names)
    assert list(out) == card.spec.output_names
    for t in card.spec.outputs:
        arr = out[t.name]
        assert arr.dtype == t.np_dtype, (name, t.name, arr.dtype)
        assert arr.ndim == len(t.shape), (name, t.name, arr.shape)
        for got, want in zip(arr.shape, t.shape):
            assert got == (1 if want == "batch" else want) or (isinstance(want, str) and want != "batch"), \
                (name, t.name, arr.shape, t.shape)
    return module


@pytest.mark.parametrize("name", LIGHT)
def test_light_factories_build_offline_and_match_their_spec(name):
    check_spec(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", HEAVY)
def test_heavy_factories_build_offline_and_match_their_spec(name):
    check_spec(name)


def test_every_card_is_complete_and_honest_about_its_weights():
    for c in CATALOG.values():
        assert c.task in TASKS and c.description and c.license and c.source, c.name
        assert c.spec.inputs and c.spec.outputs
        assert ":" in c.factory or (c.format == "onnx" and c.factory == ""), c.name  # ONNX: adapter or none
        assert c.preprocessing.get("type") in ("image", "text", "ocr-det", "ocr-line", "audio", "mtcnn", "mtcnn-crop"), c.name
        assert c.builtin or c.weights is not None, c.name
        if isinstance(c.weights, PackageFile):  # a file in a pinned wheel: version and full digest recorded
            assert c.weights.version and len(c.weights.sha256) == 64 and c.weights.path.endswith(c.weights.filename)
            continue
        if c.weights is not None and c.weights.url.startswith("https://download.pytorch.org/"):
            # torchvision publishes the first 8 hex digits of the sha256 in the file name; that is what is stored
            assert c.weights.sha256 and len(c.weights.sha256) == 8 and c.weights.sha256 in c.weights.filename
        if c.weights is not None and c.weights.sha256 is None:
            assert "no sha256" in c.source  # an unknown hash is said, never invented


def test_label_sets_come_from_torchvision_weights_meta():
    assert len(CATALOG["resnet18"].all_labels()) == 1000 and CATALOG["resnet18"].all_labels()[0] == "tench"
    assert len(CATALOG["lraspp_mobilenet_v3_large"].all_labels()) == 21
    assert CATALOG["ssdlite320_mobilenet_v3_large"].all_labels()[1] == "person"


# name -> (torchvision builder module, builder, weights enum, member)
TV_WEIGHTS = {
    "resnet18": ("", "resnet18", "ResNet18_Weights", "IMAGENET1K_V1"),
    "resnet50": ("", "resnet50", "ResNet50_Weights", "IMAGENET1K_V2"),
    "mobilenet_v2": ("", "mobilenet_v2", "MobileNet_V2_Weights", "IMAGENET1K_V2"),
    "mobilenet_v3_small": ("", "mobilenet_v3_small", "MobileNet_V3_Small_Weights", "IMAGENET1K_V1"),
    "mobilenet_v3_large": ("", "mobilenet_v3_large", "MobileNet_V3_Large_Weights", "IMAGENET1K_V2"),
    "efficientnet_b0": ("", "efficientnet_b0", "EfficientNet_B0_Weights", "IMAGENET1K_V1"),
    "vit_b_16": ("", "vit_b_16", "ViT_B_16_Weights", "IMAGENET1K_V1"),
    "deeplabv3_mobilenet_v3_large": ("segmentation", "deeplabv3_mobilenet_v3_large",
                                     "DeepLabV3_MobileNet_V3_Large_Weights", "COCO_WITH_VOC_LABELS_V1"),
    "lraspp_mobilenet_v3_large": ("segmentation", "lraspp_mobilenet_v3_large", "LRASPP_MobileNet_V3_Large_Weights",
                                  "COCO_WITH_VOC_LABELS_V1"),
    "fcn_resnet50": ("segmentation", "fcn_resnet50", "FCN_ResNet50_Weights", "COCO_WITH_VOC_LABELS_V1"),
    "ssdlite320_mobilenet_v3_large": ("detection", "ssdlite320_mobilenet_v3_large",
                                      "SSDLite320_MobileNet_V3_Large_Weights", "COCO_V1"),
    "fasterrcnn_mobilenet_v3_large_320_fpn": ("detection", "fasterrcnn_mobilenet_v3_large_320_fpn",
                                              "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights", "COCO_V1"),
    "retinanet_resnet50_fpn": ("detection", "retinanet_resnet50_fpn", "RetinaNet_ResNet50_FPN_Weights", "COCO_V1"),
}


def test_every_torchvision_card_points_at_torchvisions_own_weights_file():
    from laser.vision_compat import models

    for name, (sub, _, enum, member) in TV_WEIGHTS.items():
        weights = getattr(getattr(getattr(models(), sub) if sub else models(), enum), member)
        assert CATALOG[name].weights.url == weights.url, name


@pytest.mark.parametrize("name", _param(sorted(TV_WEIGHTS)))
def test_factory_is_the_architecture_torchvision_builds_for_the_published_weights(name, monkeypatch):
    """torchvision's own builder, given the card's weights enum, loads (strictly) the state dict of
    laser's factory-built module instead of downloading; same parameter count as the published one,
    and the same outputs."""
    from laser.vision_compat import models

    sub, builder, enum, member = TV_WEIGHTS[name]
    root = getattr(models(), sub) if sub else models()
    weights = getattr(getattr(root, enum), member)
    card = CATALOG[name]
    torch.manual_seed(0)
    ours = build_architecture(card.architecture).eval()
    inner = ours.get_submodule(card.load_into) if card.load_into else ours
    from torchvision.models._api import WeightsEnum

    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: inner.state_dict())
    reference = getattr(root, builder)(weights=weights).eval()  # strict load_state_dict inside
    assert sum(p.numel() for p in inner.parameters()) == weights.meta["num_params"]
    x = torch.randn(1, 3, 224, 224) if card.task != "detection" else torch.randn(1, 3, 320, 320)
    with torch.inference_mode():
        if card.task == "classification":
            np.testing.assert_allclose(ours(x).numpy(), reference(x).numpy(), rtol=1e-4, atol=1e-5)
        elif card.task == "segmentation":
            np.testing.assert_allclose(ours(x).numpy(), reference(x)["out"].numpy(), rtol=1e-4, atol=1e-5)
        else:  # detection: same backbone numerics (frozen batch norm, eps) as the weights' architecture
            for a, b in zip(inner.backbone(x).values(), reference.backbone(x).values()):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_load_with_random_weights_gives_a_labelled_torch_artifact():
    art = hub.load("mobilenet_v3_small", random_weights=True)
    assert art.format == "torch" and art.task == "classification" and len(art.labels) == 1000
    assert art.lineage[-1].params == {"source": "hub:mobilenet_v3_small", "weights": "random"}


def test_load_reads_a_torchvision_style_checkpoint_into_the_wrapped_model(tmp_path):
    card = CATALOG["lraspp_mobilenet_v3_large"]
    torch.manual_seed(1)
    donor = build_architecture(card.architecture)
    torch.save(donor.model.state_dict(), tmp_path / "lraspp.pth")  # keys as torchvision publishes them
    art = hub.load("lraspp_mobilenet_v3_large", weights=tmp_path / "lraspp.pth")
    for k, v in donor.state_dict().items():
        assert torch.equal(art.module.state_dict()[k], v), k


def test_load_refuses_a_checkpoint_for_another_architecture(tmp_path):
    from laser.errors import ArtifactError

    torch.save(build_architecture(CATALOG["digits-cnn"].architecture).state_dict(), tmp_path / "digits.pth")
    with pytest.raises(ArtifactError, match="do not fit the architecture"):
        hub.load("mobilenet_v3_small", weights=tmp_path / "digits.pth")


def test_load_downloads_missing_weights_and_offline_says_where_to_put_them(monkeypatch, tmp_path):
    from laser.errors import NotFoundError

    monkeypatch.setenv("LASER_CACHE", str(tmp_path))
    monkeypatch.setenv("LASER_OFFLINE", "1")
    with pytest.raises(NotFoundError, match=r"not cached .*put the file at .*resnet18-f37072fd\.pth or pass --weights"):
        hub.load("resnet18")


def test_unknown_names_and_tasks_are_clear_errors():
    from laser.errors import ConfigError, NotFoundError

    with pytest.raises(NotFoundError, match="did you mean resnet18"):
        hub.card("resnet-18")
    with pytest.raises(ConfigError, match="unknown task 'pose'"):
        hub.cards("pose")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_large", "ssdlite320_mobilenet_v3_large", "distilbert-sst2"])
def test_wrapped_catalog_models_export_to_onnx_and_match_torch(name):
    import laser

    art = hub.load(name, random_weights=True)
    onnx = laser.export(art, to="onnx", exporter="legacy")
    check = onnx.lineage[-1].results["validation"]
    assert onnx.format == "onnx" and check["passed"], check
