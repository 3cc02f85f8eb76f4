"""Model repository: versions and policies, FAILED models beside serving ones, polling reloads, control plane."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from laser.errors import ConfigError
from laser.serve import Repository, Server


def _bundle(art, path: Path) -> Path:
    return art.save(path).location


def _break(bundle: Path) -> None:
    weights = next(p for p in bundle.iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")


@pytest.fixture
def repo(tmp_path, digits_artifact) -> Path:
    root = tmp_path / "repo"
    _bundle(digits_artifact, root / "digits" / "1")
    _bundle(digits_artifact, root / "digits" / "2")
    _break(_bundle(digits_artifact, root / "broken" / "1"))
    (root / "notes.txt").write_text("not a model")
    return root


def _wait(predicate, timeout_s: float = 20.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _server(models, **options) -> Server:
    return Server(models, http_port=0, grpc_port=None, socket_port=None, backend="echo", max_batch_size=2, **options)


def test_a_broken_model_is_failed_with_its_reason_while_the_others_serve(repo, tmp_path):
    with _server([repo]) as s, httpx.Client(base_url=s.http_url) as c:
        assert c.get("/v2/health/ready").status_code == 200
        assert c.get("/v2/models/digits").json()["versions"] == ["2"]  # latest policy
        r = c.post("/v2/models/broken/infer", json={"inputs": [{"name": "input", "shape": [1, 1, 8, 8],
                                                               "datatype": "FP32", "data": [0.0] * 64}]})
        assert r.status_code == 503 and "altered" in r.json()["error"]
        index = {(row["name"], row["version"]): row for row in c.post("/v2/repository/index").json()}
        assert index[("digits", "2")]["state"] == "READY"
        assert index[("broken", "1")]["state"] == "FAILED" and "altered" in index[("broken", "1")]["reason"]
        assert str(tmp_path) not in json.dumps(list(index.values())) and str(tmp_path) not in r.text  # no paths leak


@pytest.mark.parametrize("policy, served", [("all", ["1", "2"]), ("specific:1", ["1"]), ("latest:2", ["1", "2"])])
def test_version_policies_pick_the_versions_served(repo, policy, served):
    with _server([f"digits={repo / 'digits'}"], version_policy=policy) as s, httpx.Client(base_url=s.http_url) as c:
        assert c.get("/v2/models/digits").json()["versions"] == served
        for v in served:
            assert c.get(f"/v2/models/digits/versions/{v}/ready").status_code == 200
        assert c.get("/v2/models/digits/config").json()["version_policy"]


def test_polling_loads_new_versions_and_a_failed_reload_keeps_the_old_one(repo, digits_artifact):
    with _server([repo], poll_interval_s=0.2) as s, httpx.Client(base_url=s.http_url) as c:
        def versions() -> list[str]:
            return c.get("/v2/models/digits").json().get("versions", [])

        _bundle(digits_artifact, repo / "digits" / "3")
        assert _wait(lambda: versions() == ["3"])
        _break(_bundle(digits_artifact, repo / "digits" / "4"))
        assert _wait(lambda: any(r["version"] == "4" and r["state"] == "FAILED"
                                 for r in c.post("/v2/repository/index").json()))
        assert versions() == ["3"]  # the new version failed: the old one keeps serving
        manifest = repo / "digits" / "3" / "laser.json"  # an update of the serving version that does not verify
        data = json.loads(manifest.read_text())
        for entry in data["files"].values():
            entry["sha256"] = "0" * 64
        manifest.write_text(json.dumps(data))
        assert _wait(lambda: any(r["version"] == "3" and "reload failed" in r["reason"]
                                 for r in c.post("/v2/repository/index").json()))
        assert c.get("/v2/models/digits/versions/3/ready").status_code == 200
        _bundle(digits_artifact, repo / "newcomer" / "1")  # new model directories are discovered
        assert _wait(lambda: c.get("/v2/models/newcomer/ready").status_code == 200)


def test_model_control_unloads_and_loads_when_enabled(repo):
    with _server([repo], model_control=True) as s, httpx.Client(base_url=s.http_url) as c:
        assert c.post("/v2/repository/models/digits/unload").status_code == 200
        assert c.get("/v2/models/digits/ready").status_code == 503
        assert c.post("/v2/repository/models/digits/load").status_code == 200
        assert c.get("/v2/models/digits/ready").status_code == 200
        r = c.post("/v2/repository/models/broken/load")
        assert r.status_code == 400 and "altered" in r.json()["error"]
        assert c.post("/v2/repository/models/ghost/load").status_code == 404


def test_config_json_overrides_settings_and_a_bad_one_fails_only_its_model(repo):
    (repo / "digits" / "config.json").write_text(json.dumps({"max_batch_size": 4, "preferred_batch_sizes": [2, 4]}))
    (repo / "broken" / "config.json").write_text(json.dumps({"max_batch": 4}))
    with _server([repo]) as s, httpx.Client(base_url=s.http_url) as c:
        config = c.get("/v2/models/digits/config").json()
        assert config["max_batch_size"] == 4 and config["dynamic_batching"]["preferred_batch_size"] == [2, 4]
        broken = [r for r in c.post("/v2/repository/index").json() if r["name"] == "broken"]
        assert broken[0]["state"] == "FAILED" and "unknown setting" in broken[0]["reason"]


def test_sources_are_named_and_checked(digits_artifact, tmp_path):
    bundle = _bundle(digits_artifact, tmp_path / "b")
    assert Repository([f"first={bundle}", f"second={bundle}"]).names() == ["first", "second"]
    with pytest.raises(ConfigError, match="two models are named"):
        Repository([bundle, bundle])
    with pytest.raises(ConfigError, match="version policy"):
        Repository([bundle], settings=None).defaults.override({"version_policy": "newest"}, "test")
    with pytest.raises(ConfigError, match="no models"):
        Repository([])
