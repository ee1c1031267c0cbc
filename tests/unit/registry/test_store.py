"""The store in one process: round trip, versions, immutability, aliases, delete, tamper detection."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from distilkit.registry.artifacts import content_sha256
from distilkit.registry.store import ArtifactIntegrityError, Registry, RegistryError


def test_round_trip_copies_every_file_with_its_sha256_and_card_fields(registry, model_dir):
    entry = registry.register(model_dir, "mymodel", license="apache-2.0",
                              datasets=["bookcorpus", "wikipedia"], hub_id="distilbert-base-cased",
                              description="A tiny model.")
    assert (entry.name, entry.version, entry.task, entry.aliases) == ("mymodel", "1", "fill-mask", ["latest"])
    got = registry.resolve("mymodel@1")
    assert got.to_dict() == entry.to_dict()
    path = Path(got.path)
    assert path.name == entry.content_sha256 == content_sha256(entry.meta["files"])
    assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in model_dir.iterdir())
    for name in ("config.json", "model.safetensors", "metrics.json"):
        assert (path / name).read_bytes() == (model_dir / name).read_bytes()
    assert got.meta["license"] == "apache-2.0" and got.meta["datasets"] == ["bookcorpus", "wikipedia"]
    assert got.meta["metrics"] == {"squad": {"exact_match": 77.7, "f1": 85.8}}
    assert got.meta["preprocessing"]["mask_token"] == "[MASK]"
    assert registry.check() == []


def test_database_is_sqlite_in_wal_mode(registry, model_dir):
    registry.register(model_dir, "m")
    with sqlite3.connect(registry.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_versions_default_to_the_next_integer_and_bare_name_is_latest(registry, make_dir):
    one, two = make_dir("a"), make_dir("b", weights=b"other")
    assert [registry.register(d, "m").version for d in (one, two, one)] == ["1", "2", "3"]
    registry.register(two, "m", version="9.rc")
    assert registry.register(one, "m").version == "4"  # non-integer versions do not count
    assert registry.get("m").version == "4" and registry.get("m:latest").version == "4"
    assert [e.version for e in registry.list("m")] == ["1", "2", "3", "9.rc", "4"]


def test_identical_content_is_stored_once(registry, model_dir):
    first, second = registry.register(model_dir, "a"), registry.register(model_dir, "b")
    assert first.path == second.path and len(list(registry.artifacts.iterdir())) == 1


def test_a_registered_version_is_immutable(registry, make_dir):
    registry.register(make_dir("a"), "m", version="1")
    with pytest.raises(RegistryError, match="m@1 is already registered; versions are immutable"):
        registry.register(make_dir("b", weights=b"changed"), "m", version="1")
    registry.delete("m@1")
    with pytest.raises(RegistryError, match="m@1 was deleted, and version numbers are never reused"):
        registry.register(make_dir("c"), "m", version="1")
    assert registry.register(make_dir("d"), "m").version == "2"


def test_task_is_inferred_from_config_or_named(registry, make_dir):
    qa = make_dir("qa", arch="DistilBertForQuestionAnswering")
    assert registry.register(qa, "qa").task == "question-answering"
    assert registry.register(make_dir("ner", arch="BertForTokenClassification"), "ner", task="ner").task == \
        "token-classification"
    with pytest.raises(ValueError, match="cannot infer the task"):
        registry.register(make_dir("base", arch="DistilBertModel"), "base")
    with pytest.raises(ValueError, match="unknown task 'summarization'"):
        registry.register(qa, "qa", task="summarization")


def test_not_a_model_directory_is_refused(registry, tmp_path):
    with pytest.raises(RegistryError, match="is not a model directory"):
        registry.register(tmp_path, "m")
    assert not registry.exists()


def test_aliases_point_move_and_latest_is_implicit(registry, make_dir):
    registry.register(make_dir("a"), "m", aliases=["prod"])
    registry.register(make_dir("b", weights=b"b"), "m")
    assert registry.get("m:prod").version == "1" and registry.get("m@1").aliases == ["prod"]
    assert registry.get("m@2").aliases == ["latest"]
    registry.set_alias("m@2", "prod")
    assert registry.get("m:prod").version == "2" and registry.get("m@2").aliases == ["latest", "prod"]
    with pytest.raises(RegistryError, match="'latest' is implicit"):
        registry.set_alias("m@1", "latest")
    with pytest.raises(RegistryError, match=r"m has no alias 'staging' \(aliases: latest, prod\)"):
        registry.get("m:staging")
    with pytest.raises(RegistryError, match=r"m has no version '7' \(versions: 1, 2\)"):
        registry.set_alias("m@7", "staging")


def test_delete_refuses_an_alias_target_unless_forced(registry, make_dir):
    registry.register(make_dir("a"), "m", aliases=["prod"])
    registry.register(make_dir("b", weights=b"b"), "m")
    with pytest.raises(RegistryError, match="m@1 is the target of alias prod.*--force"):
        registry.delete("m@1")
    path = Path(registry.get("m@1").path)
    registry.delete("m@1", force=True)
    assert [e.version for e in registry.list()] == ["2"] and not path.exists()
    with pytest.raises(RegistryError, match="has no alias 'prod'"):
        registry.get("m:prod")
    registry.delete("m@2")  # the implicit latest does not protect
    with pytest.raises(RegistryError, match="no model named 'm'"):
        registry.get("m")
    assert registry.check() == []


def test_delete_keeps_an_artifact_another_version_shares(registry, model_dir):
    registry.register(model_dir, "a")
    registry.register(model_dir, "b")
    registry.delete("a@1")
    registry.resolve("b@1")


def test_modified_byte_is_refused_naming_the_file(registry, model_dir):
    entry = registry.register(model_dir, "m")
    weights = Path(entry.path) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError,
                       match="m@1 failed SHA-256 verification: model.safetensors was modified"):
        registry.resolve("m@1")


def test_missing_or_added_file_is_refused_naming_the_file(registry, model_dir):
    entry = registry.register(model_dir, "m")
    (Path(entry.path) / "tokenizer_config.json").unlink()
    with pytest.raises(ArtifactIntegrityError, match="tokenizer_config.json is missing"):
        registry.resolve("m")
    original = (model_dir / "tokenizer_config.json").read_bytes()
    (Path(entry.path) / "tokenizer_config.json").write_bytes(original)
    registry.resolve("m")
    (Path(entry.path) / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ArtifactIntegrityError, match="pytorch_model.bin was added"):
        registry.resolve("m")


def test_registering_identical_content_repairs_a_tampered_copy(registry, model_dir):
    entry = registry.register(model_dir, "m")
    (Path(entry.path) / "config.json").write_text("{}")
    registry.register(model_dir, "m")
    registry.resolve("m@1")


def test_show_json_is_serialisable_and_lists_nothing_when_empty(registry, model_dir):
    assert registry.list() == [] and not registry.exists()
    with pytest.raises(RegistryError, match="is empty"):
        registry.get("m@1")
    entry = registry.register(model_dir, "m")
    assert json.loads(json.dumps(entry.to_dict()))["files"]["model.safetensors"]["size"] == 576


def test_default_home_follows_distilkit_home(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILKIT_HOME", str(tmp_path / "elsewhere"))
    assert Registry().home == tmp_path / "elsewhere"
