"""Real pretrained models whose weights ship inside pinned PyPI wheels (no model download site needed).

- PP-OCRv4 (PaddleOCR, Apache-2.0), as ONNX files converted from Paddle by RapidOCR, in
  ``rapidocr-onnxruntime==1.4.4``: the text detector (DB), the direction classifier and the recogniser
  (CRNN/SVTR, CTC, Chinese + English; its 6,623-character dictionary is in the ONNX file's metadata).
- Silero VAD v5 (MIT), ONNX, in ``silero-vad==6.2.3``. laser adapts its graph once (a lineage step): the
  sample rate is fixed at 16 kHz, and the recurrent state plus the 64 samples of context that the
  publisher's Python wrapper carries between chunks become batch-first state inputs/outputs, so each
  call is ``(chunk, state, context) -> (probability, state', context')``.
- MTCNN (Zhang et al. 2016) face detector: the three networks' weights as PyTorch state dicts in
  ``facenet-pytorch==2.6.0`` (MIT; the weights are the original authors' released Caffe models, converted);
  read with ``torch.load(weights_only=True)`` into laser's own P-Net / R-Net / O-Net (``laser.models.mtcnn``).
  The package pins an old torch: it is never installed, only its wheel downloaded (``pip download --no-deps``).

Only the files are taken, never the packages' code (see ``laser.hub.package``).
"""

from __future__ import annotations

from laser.hub.card import Card
from laser.hub.package import PackageFile
from laser.spec import ModelSpec, TensorSpec

REAL_TASKS = ("ocr-detection", "ocr-direction", "ocr-recognition", "vad", "face-detection", "face-refine",
              "face-landmarks")

RAPIDOCR = ("rapidocr-onnxruntime", "1.4.4")
PADDLE_LICENSE = ("Apache-2.0 (PaddleOCR models; ONNX conversion by RapidOCR, Apache-2.0)")
PP_NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": 1 / 255, "channel_order": "BGR"}
VAD_CHUNK, VAD_CONTEXT, VAD_RATE = 512, 64, 16_000
WEIGHTS = "laser.models.onnx_weights:weights_as_initializers"  # Paddle2ONNX keeps weights in Constant nodes


FACENET = ("facenet-pytorch", "2.6.0")
MTCNN_LICENSE = ("MIT (facenet-pytorch, Tim Esler). The weights are the MTCNN authors' released Caffe models "
                 "(Zhang, Zhang, Li, Qiao 2016, github.com/kpzhang93/MTCNN_face_detection_alignment), converted by "
                 "davidsandberg/facenet (MIT) and then to PyTorch; the authors' repository states the weights' own terms")
MTCNN_NORM = {"mean": [127.5] * 3, "std": [128.0] * 3, "scale": 1.0, "channel_order": "RGB"}
MTCNN_MODELS = ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet")


def _facenet(net: str, sha256: str) -> PackageFile:
    return PackageFile(*FACENET, f"facenet_pytorch/data/{net}.pt", sha256)


def _crops(size: int, outputs: tuple[TensorSpec, ...]) -> ModelSpec:
    return ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 3, size, size)),), outputs=outputs)


def _rapidocr(filename: str, sha256: str) -> PackageFile:
    return PackageFile(*RAPIDOCR, f"rapidocr_onnxruntime/models/{filename}", sha256)


def _image(name: str, h: int | str, w: int | str, outputs: tuple[TensorSpec, ...], **example: int) -> ModelSpec:
    """``example``: sizes of the named dims in example inputs (timing, MACs): the real inputs' sizes."""
    return ModelSpec(inputs=(TensorSpec(name, "float32", ("batch", 3, h, w)),), outputs=outputs,
                     example_dims=tuple(example.items()))


REAL_CARDS = (
    Card(
        name="pp-ocrv4-det", factory=WEIGHTS, task="ocr-detection", format="onnx",
        spec=_image("x", "height", "width", (TensorSpec("sigmoid_0.tmp_0", "float32", ("batch", 1, "height",
                                                                                        "width")),),
                    height=736, width=992),  # a 640 x 480 page resized as the preprocessing says
        preprocessing={"type": "ocr-det", **PP_NORM, "limit_side_len": 736, "limit_type": "min", "multiple": 32,
                       "thresh": 0.3, "box_thresh": 0.5, "unclip_ratio": 1.6, "dilate": True},
        weights=_rapidocr("ch_PP-OCRv4_det_infer.onnx",
                          "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
        license=PADDLE_LICENSE, source="PaddleOCR ch_PP-OCRv4_det (RapidOCR's ONNX in rapidocr-onnxruntime 1.4.4)",
        description="PP-OCRv4 text detector (DB, differentiable binarisation): a per-pixel text probability map. "
        "Resize so the shorter side is at least 736 px, both sides multiples of 32; BGR, (x/255 - 0.5) / 0.5. "
        "Post-processing: threshold 0.3, components scored by mean probability (>= 0.5), boxes unclipped by "
        "area x 1.6 / perimeter.",
    ),
    Card(
        name="pp-ocrv4-cls", factory=WEIGHTS, task="ocr-direction", format="onnx",
        spec=_image("x", 48, 192, (TensorSpec("save_infer_model/scale_0.tmp_1", "float32", ("batch", 2)),)),
        preprocessing={"type": "ocr-line", **PP_NORM, "height": 48, "width": 192, "fixed_width": True,
                       "threshold": 0.9},
        labels=("0", "180"),
        weights=_rapidocr("ch_ppocr_mobile_v2.0_cls_infer.onnx",
                          "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
        license=PADDLE_LICENSE, source="PaddleOCR ch_ppocr_mobile_v2.0_cls (RapidOCR's ONNX)",
        description="PaddleOCR text-line direction classifier (0 or 180 degrees). A line is resized to height 48 "
        "keeping its aspect ratio (width at most 192), padded right; BGR, (x/255 - 0.5) / 0.5; lines scored "
        "180 with probability >= 0.9 are turned before recognition.",
    ),
    Card(
        name="pp-ocrv4-rec", factory=WEIGHTS, task="ocr-recognition", format="onnx",
        spec=_image("x", 48, "width", (TensorSpec("softmax_11.tmp_0", "float32", ("batch", "steps", 6625)),),
                    width=320),
        preprocessing={"type": "ocr-line", **PP_NORM, "height": 48, "width": 320, "dictionary": "onnx-metadata"},
        weights=_rapidocr("ch_PP-OCRv4_rec_infer.onnx",
                          "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"),
        license=PADDLE_LICENSE, source="PaddleOCR ch_PP-OCRv4_rec (RapidOCR's ONNX)",
        description="PP-OCRv4 text-line recogniser (Chinese + English + digits), CTC over 6,625 classes: blank, the "
        "6,623 characters stored in the ONNX metadata key 'character', and space. A line is resized to height "
        "48 keeping its aspect ratio, width max(320, 48 x w / h), padded right; BGR, (x/255 - 0.5) / 0.5; "
        "decode: argmax per step, merge repeats, drop blanks.",
    ),
    Card(
        name="silero-vad", task="vad", factory="laser.models.silero:adapt", format="onnx",
        spec=ModelSpec(
            inputs=(TensorSpec("chunk", "float32", ("batch", VAD_CHUNK)),
                    TensorSpec("state_in", "float32", ("batch", 2, 128)),
                    TensorSpec("context", "float32", ("batch", VAD_CONTEXT))),
            outputs=(TensorSpec("probability", "float32", ("batch", 1)),
                     TensorSpec("state_out", "float32", ("batch", 2, 128)),
                     TensorSpec("context_out", "float32", ("batch", VAD_CONTEXT)))),
        preprocessing={"type": "audio", "sample_rate": VAD_RATE, "chunk": VAD_CHUNK, "context": VAD_CONTEXT,
                       "state": {"state_in": "state_out", "context": "context_out"}, "threshold": 0.5,
                       "min_speech_ms": 250, "min_silence_ms": 100, "speech_pad_ms": 30},
        weights=PackageFile("silero-vad", "6.2.3", "silero_vad/data/silero_vad.onnx",
                            "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
        license="MIT (Silero VAD)", source="snakers4/silero-vad v5 ONNX (in silero-vad 6.2.3)",
        description="Silero VAD v5: speech probability per 32 ms chunk (512 samples at 16 kHz), stateful (LSTM "
        "state + 64 samples of context carried between chunks, zeros at the start). Segments: probability >= "
        "0.5 starts speech, < 0.35 for 100 ms ends it; shorter than 250 ms dropped; padded by 30 ms.",
    ),
    Card(
        name="mtcnn-pnet", task="face-detection", factory="laser.models.mtcnn:pnet",
        spec=ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 3, "height", "width")),),
                       outputs=(TensorSpec("prob", "float32", ("batch", 2, "rows", "cols")),
                                TensorSpec("reg", "float32", ("batch", 4, "rows", "cols")))),
        preprocessing={"type": "mtcnn", **MTCNN_NORM, "min_face": 20, "factor": 0.709,
                       "threshold": 0.6, "nms": [0.5, 0.7], "cell": 12, "stride": 2,
                       "stages": list(MTCNN_MODELS)},
        weights=_facenet("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
        license=MTCNN_LICENSE, source="MTCNN P-Net (facenet-pytorch 2.6.0 facenet_pytorch/data/pnet.pt)",
        description="MTCNN P-Net, the first of three stages (`laser hub run mtcnn` runs all three): fully "
        "convolutional, a face probability and a box correction per 12 x 12 window at stride 2. Input: an "
        "image pyramid, RGB, (x - 127.5) / 128; scales 12/20 x 0.709^k while the shorter side stays >= 12 px "
        "(min face 20 px); windows with p >= 0.6 kept, NMS 0.5 per scale, 0.7 across scales.",
    ),
    Card(
        name="mtcnn-rnet", task="face-refine", factory="laser.models.mtcnn:rnet",
        spec=_crops(24, (TensorSpec("prob", "float32", ("batch", 2)), TensorSpec("reg", "float32", ("batch", 4)))),
        preprocessing={"type": "mtcnn-crop", **MTCNN_NORM, "size": 24, "threshold": 0.7, "nms": 0.7},
        weights=_facenet("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
        license=MTCNN_LICENSE, source="MTCNN R-Net (facenet-pytorch 2.6.0 facenet_pytorch/data/rnet.pt)",
        description="MTCNN R-Net, the second stage: each P-Net candidate, squared and cropped, resized to "
        "24 x 24 (area), RGB, (x - 127.5) / 128 -> face probability (kept >= 0.7, NMS 0.7) and a box correction.",
    ),
    Card(
        name="mtcnn-onet", task="face-landmarks", factory="laser.models.mtcnn:onet",
        spec=_crops(48, (TensorSpec("prob", "float32", ("batch", 2)), TensorSpec("reg", "float32", ("batch", 4)),
                         TensorSpec("landmarks", "float32", ("batch", 10)))),
        preprocessing={"type": "mtcnn-crop", **MTCNN_NORM, "size": 48, "threshold": 0.7, "nms": 0.7,
                       "nms_mode": "min"},
        weights=_facenet("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"),
        license=MTCNN_LICENSE, source="MTCNN O-Net (facenet-pytorch 2.6.0 facenet_pytorch/data/onet.pt)",
        description="MTCNN O-Net, the last stage: R-Net's boxes, squared, cropped and resized to 48 x 48 (area), "
        "RGB, (x - 127.5) / 128 -> face probability (kept >= 0.7), a box correction and 5 landmarks (eyes, "
        "nose, mouth corners; 5 x then 5 y as fractions of the box); NMS 0.7 over the smaller box's area.",
    ),
)
