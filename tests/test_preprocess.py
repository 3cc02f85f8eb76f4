import numpy as np
import pytest
from PIL import Image

from laser.errors import InputError
from laser.models.digits import PREPROCESSING
from laser.preprocess import image_to_array, load_image, top_k


def test_dark_digit_on_white_paper_is_inverted_to_match_the_training_data():
    img = Image.new("L", (32, 32), 255)
    for y in range(4, 28):
        img.putpixel((16, y), 0)
    x = image_to_array(img, PREPROCESSING)
    assert x.shape == (1, 1, 8, 8) and x.dtype == np.float32
    assert x.mean() < 0, "mostly background, which must map to the dark end like the digits data"


def test_resize_then_centre_crop_gives_the_crop_size():
    pre = {"type": "image", "mode": "RGB", "resize": 20, "crop": 16, "mean": [0.5] * 3, "std": [0.25] * 3}
    x = image_to_array(Image.new("RGB", (40, 30), (255, 0, 0)), pre)
    assert x.shape == (1, 3, 16, 16)
    assert np.allclose(x[0, 0], 2.0) and np.allclose(x[0, 1], -2.0)


def test_unreadable_image_bytes_give_a_clear_error():
    with pytest.raises(InputError, match="cannot read an image"):
        load_image(b"definitely not a png")


def test_top_k_sorts_by_probability_with_labels():
    res = top_k(np.array([[0.0, 3.0, 1.0]]), ["a", "b", "c"], k=2)
    assert [r["label"] for r in res[0]] == ["b", "c"]
    assert res[0][0]["score"] > res[0][1]["score"] and abs(sum(softmax_row["score"] for softmax_row in res[0])) < 1
