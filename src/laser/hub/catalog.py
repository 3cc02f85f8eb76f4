"""The catalog: a plain dict of model cards, name -> Card.

A card says what the model is (task, architecture factory, spec, preprocessing, labels), where its
weights come from (shipped inside laser, or a URL + sha256 + license), and, once measured, its LASER
card with the hardware it was measured on.

torchvision cards use the weights torchvision itself downloads (``download.pytorch.org``). torchvision
publishes only the first 8 hex digits of each file's sha256 (in the file name, e.g. ``-f37072fd``); that
prefix is what these cards store and check, as ``torch.hub`` does. Factories rebuild each model exactly
as torchvision builds it for those weights, with ``weights=None`` and no network; detection and
segmentation models are wrapped to return tensors (see ``laser.models.detection`` / ``.vision``).
Where the card's input size is fixed and torchvision's is not (detectors other than SSDlite resize
keeping the aspect ratio), the card says so: fixed shapes are what export, quantization and batching need.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from laser.hub.card import Card
from laser.hub.download import Remote
from laser.hub.real import REAL_CARDS, REAL_TASKS
from laser.models import digits
from laser.spec import ModelSpec, TensorSpec, image_spec

TASKS = ("classification", "segmentation", "detection", "text-classification", *REAL_TASKS)


TV = "https://download.pytorch.org/models/"
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
TV_LICENSE = ("BSD-3-Clause (torchvision); weights trained on {data}, whose terms apply to the weights "
              "(ImageNet: non-commercial research and education)")


def _remote(filename: str) -> Remote:
    """A torchvision weights file; its name ends with the first 8 hex digits of its sha256."""
    return Remote(TV + filename, sha256=filename.rsplit("-", 1)[1].split(".")[0])


def _classifier(name: str, filename: str, enum: str, resize: int = 256, interpolation: str = "bilinear",
                description: str = "") -> Card:
    return Card(
        name=name, task="classification", factory="laser.models.vision:classifier", kwargs={"arch": name},
        spec=image_spec(3, 224, 224, 1000),
        preprocessing={"type": "image", "mode": "RGB", "resize": resize, "crop": 224,
                       "interpolation": interpolation, **IMAGENET},
        label_set="imagenet", weights=_remote(filename), license=TV_LICENSE.format(data="ImageNet-1k"),
        source=f"torchvision {enum}", description=description,
    )


SEG_SIZE = 520  # torchvision resizes the shorter side to 520; cards use a fixed 520 x 520


def _segmenter(name: str, filename: str, enum: str, description: str) -> Card:
    return Card(
        name=name, task="segmentation", factory="laser.models.vision:segmenter", kwargs={"arch": name},
        spec=ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 3, SEG_SIZE, SEG_SIZE)),),
                       outputs=(TensorSpec("logits", "float32", ("batch", 21, SEG_SIZE, SEG_SIZE)),)),
        preprocessing={"type": "image", "mode": "RGB", "size": [SEG_SIZE, SEG_SIZE], **IMAGENET},
        label_set="voc", weights=_remote(filename), load_into="model",
        license=TV_LICENSE.format(data="a COCO subset with the 20 Pascal VOC categories"),
        source=f"torchvision {enum}", description=description + f" Input fixed at {SEG_SIZE} x {SEG_SIZE} "
        "(torchvision: shorter side 520).",
    )


def _detector(name: str, filename: str, enum: str, size: int, candidates: int | str, pre: Mapping[str, Any],
              description: str) -> Card:
    return Card(
        name=name, task="detection", factory="laser.models.detection:detector", kwargs={"arch": name},
        spec=ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 3, size, size)),),
                       outputs=(TensorSpec("boxes", "float32", ("batch", candidates, 4)),
                                TensorSpec("scores", "float32", ("batch", candidates)),
                                TensorSpec("labels", "int64", ("batch", candidates)))),
        preprocessing={"type": "image", "mode": "RGB", "size": [size, size], **pre},
        label_set="coco", weights=_remote(filename), load_into="model",
        license=TV_LICENSE.format(data="COCO 2017 (annotations CC BY 4.0)"), source=f"torchvision {enum}",
        description=description + " Outputs candidates before NMS; the pipeline applies NMS.",
    )


_CARDS = (
    Card(
        name="digits-cnn", task="classification", factory="laser.models.digits:digits_cnn",
        kwargs={"classes": 10, "widths": [32, 64, 128]}, spec=digits.SPEC, preprocessing=digits.PREPROCESSING,
        labels=digits.LABELS, builtin="digits-cnn.safetensors", source="laser (trained by `laser train`)",
        description="Small CNN for scikit-learn's 8x8 handwritten digits; laser's built-in default model.",
        license="BSD-3-Clause (data: scikit-learn digits / UCI)",
    ),
    _classifier("resnet18", "resnet18-f37072fd.pth", "ResNet18_Weights.IMAGENET1K_V1",
                description="ResNet-18, ImageNet-1k top-1 69.76 % (torchvision's figure)."),
    _classifier("resnet50", "resnet50-11ad3fa6.pth", "ResNet50_Weights.IMAGENET1K_V2", resize=232,
                description="ResNet-50, ImageNet-1k top-1 80.86 % (torchvision's figure)."),
    _classifier("mobilenet_v2", "mobilenet_v2-7ebf99e0.pth", "MobileNet_V2_Weights.IMAGENET1K_V2", resize=232,
                description="MobileNetV2, ImageNet-1k top-1 72.15 % (torchvision's figure)."),
    _classifier("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
                description="MobileNetV3-Small, ImageNet-1k top-1 67.67 % (torchvision's figure)."),
    _classifier("mobilenet_v3_large", "mobilenet_v3_large-5c1a4163.pth", "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
                resize=232, description="MobileNetV3-Large, ImageNet-1k top-1 75.27 % (torchvision's figure)."),
    _classifier("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth", "EfficientNet_B0_Weights.IMAGENET1K_V1",
                interpolation="bicubic",
                description="EfficientNet-B0, ImageNet-1k top-1 77.69 % (torchvision's figure)."),
    _classifier("vit_b_16", "vit_b_16-c867db91.pth", "ViT_B_16_Weights.IMAGENET1K_V1",
                description="ViT-B/16, ImageNet-1k top-1 81.07 % (torchvision's figure)."),
    _segmenter("deeplabv3_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large-fc3c493d.pth",
               "DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
               "DeepLabV3 with a MobileNetV3-Large backbone, 21 VOC classes; mIoU 60.3 (torchvision's figure)."),
    _segmenter("lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_large-d234d4ea.pth",
               "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
               "Lite R-ASPP with a MobileNetV3-Large backbone, 21 VOC classes; mIoU 57.9 (torchvision's figure)."),
    _segmenter("fcn_resnet50", "fcn_resnet50_coco-1167a1af.pth", "FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
               "FCN with a ResNet-50 backbone, 21 VOC classes; mIoU 60.5 (torchvision's figure)."),
    _detector("ssdlite320_mobilenet_v3_large", "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
              "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1", 320, 3234, {"mean": [0.5] * 3, "std": [0.5] * 3},
              "SSDlite 320 with a MobileNetV3-Large backbone, 90 COCO classes; box mAP 21.3 (torchvision's "
              "figure). Same 320 x 320 input as torchvision."),
    _detector("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth",
              "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1", 320, "candidates", IMAGENET,
              "Faster R-CNN, MobileNetV3-Large FPN, 90 COCO classes; box mAP 22.8 (torchvision's figure, at "
              "shorter side 320 keeping the aspect ratio; here a fixed 320 x 320)."),
    _detector("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_coco-eeacb38b.pth", "RetinaNet_ResNet50_FPN_Weights.COCO_V1",
              800, 120087, IMAGENET,
              "RetinaNet, ResNet-50 FPN, 90 COCO classes; box mAP 36.4 (torchvision's figure, at shorter side 800 "
              "keeping the aspect ratio; here a fixed 800 x 800)."),
    Card(
        name="distilbert-sst2", task="text-classification", factory="laser.models.text:distilbert_classifier",
        kwargs={"classes": 2},
        spec=ModelSpec(
            inputs=(TensorSpec("input_ids", "int64", ("batch", 128), value_range=(0, 30522)),
                    TensorSpec("attention_mask", "int64", ("batch", 128), value_range=(1, 2))),
            outputs=(TensorSpec("logits", "float32", ("batch", 2)),)),
        preprocessing={"type": "text", "tokenizer": "wordpiece", "lowercase": True, "max_length": 128},
        labels=("NEGATIVE", "POSITIVE"),
        weights=Remote("https://huggingface.co/distilbert/distilbert-base-uncased-finetuned-sst-2-english"
                       "/resolve/main/model.safetensors"),
        assets={"vocab": Remote("https://huggingface.co/distilbert/distilbert-base-uncased-finetuned-sst-2-english"
                                "/resolve/main/vocab.txt")},
        load_into="model", license="Apache-2.0",
        source="Hugging Face distilbert/distilbert-base-uncased-finetuned-sst-2-english (no sha256 known offline)",
        description="DistilBERT (BERT-style, 6 layers) fine-tuned on SST-2 sentiment; accuracy 91.3 % on the "
        "SST-2 dev set (the publisher's figure). Texts are padded/truncated to 128 tokens.",
    ),
)

CATALOG: dict[str, Card] = {c.name: c for c in (*_CARDS, *REAL_CARDS)}
