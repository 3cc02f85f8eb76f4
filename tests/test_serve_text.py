"""A text classifier served behind its own tokenizer: BYTES headlines in (JSON, binary, gRPC), labels and
scores out, the same as laser's text pipeline gives for the same artifact."""

from __future__ import annotations

import numpy as np
import pytest

import triton_models

th = pytest.importorskip("tritonclient.http")
tg = pytest.importorskip("tritonclient.grpc")
httpx = pytest.importorskip("httpx")
from tritonclient.utils import InferenceServerException  # noqa: E402

import laser  # noqa: E402
from laser.serve import Server  # noqa: E402

TITLES = [*triton_models.HEADLINES, "Researchers patch a security flaw"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    art = triton_models.text_classifier(tmp_path_factory.mktemp("news"))
    expected = laser.pipeline("text-classification", model=art, backend="torch").run_batch(TITLES, top_k=1)
    with Server([art], http_port=0, grpc_port=0, socket_port=None, backend="torch", max_batch_size=8) as s:
        yield s, expected


def _check(result, expected) -> None:
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("LABEL").ravel()]
    assert labels == [e["label"] for e in expected]
    np.testing.assert_allclose(result.as_numpy("SCORE").ravel(), [e["score"] for e in expected], rtol=1e-5)


def test_headlines_as_bytes_get_the_pipelines_labels_over_json_binary_and_grpc(served):
    server, expected = served
    texts = np.array([[t.encode()] for t in TITLES], dtype=np.object_)
    http = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    meta = http.get_model_metadata("news_titles")
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [("TEXT", "BYTES", [-1, 1])]
    assert [t["name"] for t in meta["outputs"]][:2] == ["LABEL", "SCORE"]
    for binary in (False, True):
        inp = th.InferInput("TEXT", list(texts.shape), "BYTES")
        inp.set_data_from_numpy(texts, binary_data=binary)
        outs = [th.InferRequestedOutput(n, binary_data=binary) for n in ("LABEL", "SCORE")]
        _check(http.infer("news_titles", [inp], outputs=outs), expected)
    grpc = tg.InferenceServerClient(server.grpc_target)
    inp = tg.InferInput("TEXT", list(texts.shape), "BYTES")
    inp.set_data_from_numpy(texts)
    _check(grpc.infer("news_titles", [inp]), expected)
    # plain JSON, as curl would send it: ["a headline", ...]
    r = httpx.post(f"{server.http_url}/v2/models/news_titles/infer", json={"inputs": [
        {"name": "TEXT", "datatype": "BYTES", "shape": [len(TITLES), 1], "data": TITLES}]})
    assert r.status_code == 200, r.text
    got = {o["name"]: o["data"] for o in r.json()["outputs"]}
    assert got["LABEL"] == [e["label"] for e in expected]


def test_bad_texts_are_one_clear_error_and_do_not_fail_others(served):
    server, expected = served
    http = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    for bad, words in ((b"\xff\xfe", "not valid UTF-8"), (b"   ", "empty")):
        inp = th.InferInput("TEXT", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[bad]], dtype=np.object_))
        with pytest.raises(InferenceServerException) as err:
            http.infer("news_titles", [inp])
        assert words in err.value.message()
    inp = th.InferInput("TEXT", [1, 1], "INT64")
    inp.set_data_from_numpy(np.zeros((1, 1), np.int64))
    with pytest.raises(InferenceServerException, match="expects BYTES"):
        http.infer("news_titles", [inp])
    inp = th.InferInput("TEXT", [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[TITLES[0].encode()]], dtype=np.object_))
    _check(http.infer("news_titles", [inp]), expected[:1])


def test_the_pipeline_route_still_runs_the_model_on_its_tokens(served):
    server, expected = served
    r = httpx.post(f"{server.http_url}/v2/models/news_titles/pipeline", content=TITLES[1].encode())
    assert r.status_code == 200, r.text
    assert r.json()["label"] == expected[1]["label"]


def test_text_input_false_serves_the_token_ids_as_the_artifact_takes_them(served, tmp_path):
    art = triton_models.text_classifier(tmp_path)
    with Server([art], http_port=0, grpc_port=None, socket_port=None, backend="torch", text_input=False) as s:
        meta = httpx.get(f"{s.http_url}/v2/models/news_titles").json()
        assert [t["name"] for t in meta["inputs"]] == ["input_ids", "attention_mask"]
        assert [t["name"] for t in meta["outputs"]] == ["logits"]
