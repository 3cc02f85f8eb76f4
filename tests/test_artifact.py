import json
import os
from pathlib import Path

import pytest
import torch

import laser
from laser.artifact import MANIFEST, Artifact, Step
from laser.errors import ArtifactError


def test_round_trip_keeps_manifest_and_outputs(digits_artifact, tmp_path):
    saved = digits_artifact.save(tmp_path / "b")
    again = laser.load(tmp_path / "b")
    assert again.manifest.to_dict() == saved.manifest.to_dict()
    assert (tmp_path / "b" / "model.safetensors").is_file()
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    assert set(manifest["files"]) == {"model.safetensors"}
    assert manifest["files"]["model.safetensors"]["sha256"]
    feeds = digits_artifact.spec.example_inputs(batch=4)
    a = laser.run(digits_artifact, backend="torch")(feeds)["logits"]
    b = laser.run(again, backend="torch")(feeds)["logits"]
    assert (a == b).all()


def test_flipped_byte_is_detected_and_named(digits_artifact, tmp_path):
    digits_artifact.save(tmp_path / "b")
    f = tmp_path / "b" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="'model.safetensors' was altered"):
        laser.load(tmp_path / "b")


def test_missing_file_is_detected_and_named(digits_artifact, tmp_path):
    digits_artifact.save(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing 'model.safetensors'"):
        laser.load(tmp_path / "b")


def test_interrupted_save_leaves_the_earlier_bundle_intact(digits_artifact, tmp_path, monkeypatch):
    target = tmp_path / "b"
    first = digits_artifact.save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    retrained = digits_artifact.derive(Step("noop"), name="other")
    calls = {"n": 0}
    real_copy = __import__("shutil").copyfile

    def crash_after_first_file(src, dst, *a, **k):
        calls["n"] += 1
        real_copy(src, dst, *a, **k)
        raise OSError("disk full (injected)")

    monkeypatch.setattr("laser.artifact.shutil.copyfile", crash_after_first_file)
    with pytest.raises(OSError, match="injected"):
        retrained.save(target)
    monkeypatch.undo()
    assert calls["n"] == 1
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert laser.load(target).name == first.name
    assert [p.name for p in tmp_path.iterdir()] == ["b"], "no staging directory is left behind"


def test_save_over_an_existing_bundle_replaces_it_whole(digits_artifact, tmp_path):
    target = tmp_path / "b"
    digits_artifact.save(target)
    digits_artifact.derive(Step("rename"), name="renamed").save(target)
    assert laser.load(target).name == "renamed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_save_refuses_a_directory_that_is_not_a_bundle(digits_artifact, tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not a laser bundle"):
        digits_artifact.save(tmp_path / "b")
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"


def test_derive_extends_lineage_and_never_mutates(digits_artifact):
    child = digits_artifact.derive(Step("tag", params={"k": 1}))
    assert len(child.lineage) == len(digits_artifact.lineage) + 1
    assert child.lineage[-1].op == "tag" and "torch" in child.lineage[-1].versions
    assert digits_artifact.lineage[-1].op == "load"


def test_manifest_outside_paths_are_refused(digits_artifact, tmp_path):
    digits_artifact.save(tmp_path / "b")
    m = json.loads((tmp_path / "b" / MANIFEST).read_text())
    m["files"]["../evil"] = {"sha256": "0", "bytes": 1, "role": "x"}
    (tmp_path / "b" / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="outside the bundle"):
        Artifact.open(tmp_path / "b")


def test_corrupt_manifest_is_explained(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="not a valid manifest"):
        laser.load(tmp_path / "b")


def test_module_of_a_saved_bundle_is_rebuilt_from_factory(digits_artifact, tmp_path):
    saved = digits_artifact.save(tmp_path / "b")
    module = Artifact.open(saved.location).module
    assert isinstance(module, torch.nn.Module)
    assert os.fspath(saved.model_file).endswith("model.safetensors")
    assert Path(saved.model_file).parent == tmp_path / "b"


def test_derive_with_a_new_module_gives_a_torch_artifact_one_step_longer(digits_artifact):
    from laser.models.digits import digits_cnn

    child = digits_artifact.derive(Step("retrain"), module=digits_cnn())
    assert child.format == "torch" and child.lineage[-1].op == "retrain"
    assert len(child.lineage) == len(digits_artifact.lineage) + 1
    assert child.module is not digits_artifact.module
