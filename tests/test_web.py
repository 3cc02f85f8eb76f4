"""laser web: the page runs the artifact in a real headless Chromium (Playwright) and agrees with laser's
Python onnxruntime runner; what is wrong with a model or the set-up gets one clear error."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

import laser
from laser.errors import BackendError, ConfigError, DependencyError

SAMPLES = 64


@pytest.fixture(scope="session")
def runtime():
    from laser.web import fetch_runtime

    try:
        return fetch_runtime()
    except DependencyError as exc:
        pytest.skip(f"onnxruntime-web is not installed and cannot be fetched: {exc}")


@pytest.fixture(scope="session")
def browser(runtime):
    """One headless Chromium for every browser test."""
    from laser.web.browser import Browser, chromium_path

    try:
        chromium_path()
    except DependencyError as exc:
        print(f"\n{exc}")
        pytest.skip(str(exc))
    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope="session")
def digits_onnx(digits_artifact):
    return laser.export(digits_artifact, to="onnx")


@pytest.fixture(scope="session")
def digits_int8(digits_onnx, digits_test):
    return laser.Quantize("int8-static", calibration="digits", data=digits_test, progress=False)(digits_onnx)


def open_site(browser, art, tmp_path):
    from laser.web import write_site
    from laser.web.server import start

    site = write_site(art, tmp_path / "site")
    server, url = start(site)
    page = browser.open(url + "index.html")
    return server, url, page


def reference(art, feeds):
    with laser.run(art, backend="onnxruntime") as runner:
        return runner(feeds)[art.spec.output_names[0]]


def assert_agrees(art, got, ref):
    tol = art.spec.tolerance
    assert float((got.argmax(1) == ref.argmax(1)).mean()) >= 0.99
    assert np.all(np.abs(got - ref) <= tol.atol + tol.rtol * np.abs(ref)), float(np.abs(got - ref).max())


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_digits_page_runs_offline_and_matches_python_onnxruntime(which, browser, digits_onnx, digits_int8,
                                                                  digits_test, tmp_path):
    art = digits_onnx if which == "fp32" else digits_int8
    server, url, page = open_site(browser, art, tmp_path)
    try:
        assert page.info["backend"] == "wasm" and page.info["model"]["precision"] == which
        feeds = digits_test.take(SAMPLES).feeds(art.spec.input_names)
        # the documented API, plain arrays in and out (not the byte channel the backend uses)
        out = page.evaluate("""async ([name, data, dims]) => {
            const out = await window.laser.run({[name]: {data: new Float32Array(data), dims}});
            const first = Object.values(out)[0]; return {data: Array.from(first.data), dims: first.dims}; }""",
                            [art.spec.input_names[0], feeds[art.spec.input_names[0]].ravel().tolist(),
                             list(feeds[art.spec.input_names[0]].shape)])
        got = np.asarray(out["data"], np.float32).reshape(out["dims"])
        assert_agrees(art, got, reference(art, feeds))
        assert page.outside(url) == [] and any(u.endswith(".wasm") for u in page.requests)
    finally:
        page.close()
        server.shutdown()
        server.server_close()


def test_classify_of_a_drawn_digit_matches_laser_run_on_the_same_png(browser, digits_onnx, tmp_path, capsys):
    from laser.cli.main import main

    server, _, page = open_site(browser, digits_onnx, tmp_path)
    try:
        pad = page.page.locator("#pad").bounding_box()
        mouse = page.page.mouse
        mouse.move(pad["x"] + 70, pad["y"] + 50)
        mouse.down()
        for x, y in [(150, 50), (150, 110), (80, 190), (150, 190)]:  # a "7"-ish then a foot: some digit
            mouse.move(pad["x"] + x, pad["y"] + y, steps=8)
        mouse.up()
        page.page.wait_for_function("() => document.querySelector('#latency')?.textContent.includes('p50 ')")
        got = page.evaluate("""async () => { const c = document.getElementById('pad');
            const r = await window.laser.classify(c, 3);
            return {png: c.toDataURL('image/png'), top: r.top_k, logits: r.logits}; }""")
        shot = page.screenshot(tmp_path / "page.png")
        assert shot.stat().st_size > 10_000
        assert page.page.locator("#output table tr").count() == 3  # the top-3 labels are shown
    finally:
        page.close()
        server.shutdown()
        server.server_close()
    png = tmp_path / "digit.png"
    png.write_bytes(base64.b64decode(got["png"].split(",", 1)[1]))
    bundle = digits_onnx.save(tmp_path / "bundle")
    assert main(["run", str(bundle.location), "--input", str(png), "--backend", "onnxruntime", "--json",
                 "--top-k", "3"]) == 0
    ran = json.loads(capsys.readouterr().out)["top_k"][0]
    assert ran[0]["label"] == got["top"][0]["label"]
    assert ran[0]["score"] == pytest.approx(got["top"][0]["score"], abs=1e-4)


def test_js_image_preprocessing_matches_laser_preprocess(browser, digits_onnx, tmp_path):
    """Pillow's resize filters and L conversion, in JS, against laser.preprocess on random images."""
    from PIL import Image

    from laser.preprocess import image_to_array

    server, _, page = open_site(browser, digits_onnx, tmp_path)
    rng = np.random.default_rng(0)
    cases = [((37, 23), {"type": "image", "mode": "L", "size": [8, 8], "mean": [0.5], "std": [0.5], "ink": "light"}),
             ((40, 52), {"type": "image", "mode": "RGB", "resize": 20, "crop": 16, "mean": [0.4, 0.5, 0.6],
                         "std": [0.2, 0.3, 0.25], "interpolation": "bicubic"}),
             ((9, 30), {"type": "image", "mode": "RGB", "size": [12, 5], "interpolation": "nearest"}),
             ((6, 6), {"type": "image", "mode": "RGB", "size": [19, 17]})]
    try:
        for (w, h), pre in cases:
            rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
            rgba[..., 3] = 255
            got = page.evaluate("""async ([data, w, h, pre]) => {
                const { imageTensor } = await import('./preprocess.js');
                const x = imageTensor(new Uint8ClampedArray(data), w, h, pre);
                return {data: Array.from(x.data), dims: x.dims}; }""", [rgba.ravel().tolist(), w, h, pre])
            want = image_to_array(Image.fromarray(rgba, "RGBA"), pre)
            assert got["dims"] == list(want.shape), pre
            np.testing.assert_allclose(np.asarray(got["data"], np.float32).reshape(want.shape), want, atol=1e-6)
    finally:
        page.close()
        server.shutdown()
        server.server_close()


def tiny_text(tmp_path):
    from test_pipelines import tiny_text_artifact

    return laser.export(tiny_text_artifact(tmp_path), to="onnx")


TEXTS = ["Stocks rally on earnings", "team wins the final match!", "Café crème, naïve résumé", "stocks, stocks.",
         "an unknownword xyz", "TEAM   wins\tthe\nfinal", "earnings: +12% (Q3)", "中文 text", ""]


def test_text_page_tokenizes_like_transformers_and_matches_onnxruntime(browser, tmp_path):
    from laser.hub.pipelines.text import encode

    art = tiny_text(tmp_path)
    texts = [TEXTS[i % len(TEXTS)] + (f" {i}" if i >= len(TEXTS) else "") for i in range(SAMPLES)]
    server, url, page = open_site(browser, art, tmp_path)
    try:
        got = page.evaluate("""async (texts) => { const out = [];
            for (const t of texts) { const r = await window.laser.classifyText(t); out.push([r.tokens, r.logits]); }
            return out; }""", texts)
        page.page.fill("#text", "Team wins the final!")  # the page's own text box and button
        page.page.click("#classify")
        page.page.wait_for_function("() => document.querySelector('#latency')?.textContent.includes('p50 ')")
        assert page.page.locator("#output table tr").count() == 2  # both labels, best first
        assert page.outside(url) == []
    finally:
        page.close()
        server.shutdown()
        server.server_close()
    feeds = encode(art.preprocessing, texts, art.spec.input_names)
    assert [g[0] for g in got] == feeds["input_ids"].tolist()
    assert_agrees(art, np.asarray([g[1] for g in got], np.float32), reference(art, feeds))


def test_browser_backend_runs_like_onnxruntime(runtime, browser, digits_onnx, digits_test):
    feeds = digits_test.take(8).feeds(digits_onnx.spec.input_names)
    with laser.run(digits_onnx, backend="browser") as runner:
        got = runner(feeds)[digits_onnx.spec.output_names[0]]
        assert runner.describe()["backend"] == "browser" and runner.device == "wasm"
    assert_agrees(digits_onnx, got, reference(digits_onnx, feeds))
    assert "browser" not in laser.runtime.backends_for(digits_onnx)  # never started by backend="auto"


def test_site_server_sets_isolation_headers_and_wasm_type(runtime, digits_onnx, tmp_path):
    from laser.web import write_site
    from laser.web.server import start

    site = write_site(digits_onnx, tmp_path / "site", backend="wasm")
    server, url = start(site)
    try:
        with urllib.request.urlopen(url + "ort/ort-wasm-simd-threaded.wasm", timeout=10) as r:
            headers = r.headers
        assert headers["Content-Type"] == "application/wasm"
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
    cfg = json.loads((site / "model.json").read_text())
    assert cfg["about"]["name"] == "digits-cnn" and cfg["labels"][:2] == ["0", "1"]
    assert str(tmp_path) not in (site / "model.json").read_text()  # no local paths in the site
    assert not (site / "ort" / "ort.webgpu.min.mjs").exists()  # --backend wasm ships only the WASM build


def test_an_operator_the_web_runtime_lacks_is_named(runtime, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from laser.artifact import Artifact
    from laser.spec import ModelSpec, TensorSpec
    from laser.web import write_site

    node = helper.make_node("FancyOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, tmp_path / "fancy.onnx")
    spec = ModelSpec(inputs=(TensorSpec("x", "float32", (1, 4)),), outputs=(TensorSpec("y", "float32", (1, 4)),))
    art = Artifact.from_files({"model.onnx": tmp_path / "fancy.onnx"}, name="fancy", task="other", format="onnx",
                              spec=spec)
    with pytest.raises(BackendError, match=r"\['com.example:FancyOp'\].*onnxruntime-web cannot run"):
        write_site(art, tmp_path / "site")
    assert not (tmp_path / "site").exists() and list(tmp_path.glob(".site-*")) == []


def test_missing_runtime_and_foreign_folder_get_one_clear_error(digits_onnx, tmp_path, monkeypatch, capsys):
    from laser.cli.main import main
    from laser.web import runtime_files, write_site

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    monkeypatch.setattr(runtime_files, "install_dirs", lambda: [tmp_path / "none"])
    with pytest.raises(DependencyError, match=r"`laser web --fetch-runtime`"):
        write_site(digits_onnx, tmp_path / "site")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="not a site laser wrote"):
        write_site(digits_onnx, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert main(["web", str(tmp_path / "nothing-here.onnx")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("laser web: error:")


def test_laser_serve_web_mounts_the_page_beside_the_oip_routes(browser, digits_onnx, digits_test):
    server = laser.serve(digits_onnx, backend="onnxruntime", http_port=0, grpc_port=None, socket_port=None,
                         block=False, web=True, warmup=False)
    try:
        base = server.http_url
        page = browser.open(f"{base}/web/digits-cnn")  # redirected to /web/digits-cnn/
        try:
            assert page.info["isolated"] is True and page.info["model"]["name"] == "digits-cnn"
            feeds = digits_test.take(8).feeds(digits_onnx.spec.input_names)
            assert_agrees(digits_onnx, page.run(feeds)["logits"], reference(digits_onnx, feeds))
            assert page.outside(base) == []
        finally:
            page.close()
        with urllib.request.urlopen(f"{base}/v2/models/digits-cnn/ready", timeout=10) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/web/digits-cnn/../../etc/passwd", timeout=10)
        assert err.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/web/nope/", timeout=10)
        assert err.value.code == 404 and "unknown model" in err.value.read().decode()
    finally:
        server.stop()


def test_laser_web_is_a_function_and_exports_a_torch_artifact_first(runtime, digits_artifact, digits_int8,
                                                                     tmp_path):
    site = laser.web(digits_artifact, tmp_path / "site", backend="wasm")
    cfg = json.loads((site / "model.json").read_text())
    assert cfg["about"]["lineage"] == ["load", "export"] and (site / "model.onnx").stat().st_size > 100_000
    again = laser.web(digits_int8, tmp_path / "site", backend="wasm")  # a site laser wrote is replaced
    assert json.loads((site / "model.json").read_text())["about"]["precision"] == "int8"
    assert again == site and sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_laser_web_cli_writes_and_checks_the_site(browser, digits_onnx, tmp_path, capsys):
    from laser.cli.main import main

    bundle = digits_onnx.save(tmp_path / "bundle")
    assert main(["web", str(bundle.location), "-o", str(tmp_path / "site"), "--check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["check"]["backend"] == "wasm" and "ort/ort-wasm-simd-threaded.wasm" in out["files"]
    assert {"index.html", "laser.js", "model.onnx", "model.json"} <= set(out["files"])


def test_bench_runs_the_browser_backend_when_asked_by_name(digits_artifact, digits_onnx):
    from laser.measure.bench import _jobs

    assert _jobs(digits_onnx, ["browser"], True, {}) == ([(digits_onnx, "browser")], [])
    jobs, missed = _jobs(digits_artifact, ["browser"], True, {})
    assert jobs[0][0].format == "onnx" and jobs[0][1] == "browser" and not missed


def test_segment_and_detect_in_the_page_match_laser_pipelines(browser, tmp_path):
    from PIL import Image

    from laser.hub.pipelines import pipeline_for
    from test_pipelines import det_artifact, seg_artifact

    rng = np.random.default_rng(1)
    scene = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))  # the model's own size
    street = tmp_path / "street.png"
    Image.new("RGB", (200, 300), (90, 120, 150)).save(street)  # W 200, H 300: boxes scale by 2 and 3
    seg, det = (laser.export(a, to="onnx", exporter="legacy") for a in (seg_artifact(), det_artifact()))
    rgba = np.asarray(scene.convert("RGBA"))
    for art in (seg, det):
        server, url, page = open_site(browser, art, tmp_path / art.name)
        try:
            if art is seg:
                got = page.evaluate("""async ([data, w, h]) => {
                    const r = await window.laser.segment(new ImageData(new Uint8ClampedArray(data), w, h));
                    return {mask: Array.from(r.mask), classes: r.classes}; }""", [rgba.ravel().tolist(), 32, 32])
                want = pipeline_for(art).run(scene)
                assert got["mask"] == pipeline_for(art).mask(scene)[1].ravel().tolist()
                assert [c["label"] for c in got["classes"]] == [c["label"] for c in want["classes"]]
            else:
                page.page.set_input_files("input[type=file]", str(street))  # the page's own picker
                page.page.wait_for_function("() => document.querySelector('#latency')?.textContent.includes('p50 ')")
                got = page.evaluate("async () => (await window.laser.detect(document.getElementById('answer'))).detections")
                want = pipeline_for(art).run(street, score_threshold=0.5)["detections"]
                assert [d["label"] for d in got] == [d["label"] for d in want] == ["cat", "dog"]
                np.testing.assert_allclose([d["box"] for d in got], [d["box"] for d in want], atol=1e-3)
                assert "cat" in page.page.locator("#output").inner_text()
            assert page.outside(url) == []
        finally:
            page.close()
            server.shutdown()
            server.server_close()


@pytest.mark.slow
def test_laser_bench_reports_the_browser_beside_onnxruntime(browser, digits_onnx, tmp_path, capsys):
    from laser.cli.main import main

    bundle = digits_onnx.save(tmp_path / "bundle")
    assert main(["bench", str(bundle.location), "--backends", "onnxruntime,browser", "--data", "digits",
                 "--seconds", "0.3", "--repeats", "1", "--no-peak", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["backend"]: r for r in report["artifacts"]}
    assert set(rows) == {"onnxruntime", "browser"}
    assert rows["browser"]["accuracy"]["top1"] == pytest.approx(rows["onnxruntime"]["accuracy"]["top1"], abs=0.003)
    assert rows["browser"]["latency"]["p50_ms"] > 0
