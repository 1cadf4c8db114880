"""export-onnx's build-cache logic on model folders made here: what it accepts, and when it skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotwatch.detection.embedding import ONNX_FILE, ONNX_MANIFEST
from cotwatch_training.onnx_export import _is_current, read_structure, sha256_file, source_fingerprint


def model_folder(root: Path, *, pooling: str = "pooling_mode_mean_tokens", normalize: bool = True) -> Path:
    root.mkdir(parents=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": False, pooling: True}))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    (root / "tokenizer.json").write_text(json.dumps({"padding": {"pad_id": 0, "pad_token": "[PAD]"}}))
    (root / "model.safetensors").write_bytes(b"weights-v1")
    return root


def test_the_structure_is_read_from_the_model_folder(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "m")
    assert read_structure(folder) == {"max_seq_length": 256, "pad_id": 0, "pad_token": "[PAD]"}


def test_a_pooling_the_onnx_embedder_cannot_reproduce_is_refused(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "m", pooling="pooling_mode_cls_token")
    with pytest.raises(ValueError, match="mean pooling only"):
        read_structure(folder)


def test_the_fingerprint_changes_with_the_weights(tmp_path: Path) -> None:
    # Given a model folder's fingerprint
    folder = model_folder(tmp_path / "m")
    before = source_fingerprint(folder)
    assert source_fingerprint(folder) == before  # stable
    # When the weights change, then so does the fingerprint
    (folder / "model.safetensors").write_bytes(b"weights-v2")
    assert source_fingerprint(folder) != before


def test_an_export_is_current_only_with_the_same_manifest_and_an_intact_file(tmp_path: Path) -> None:
    # Given an export folder with its manifest
    out = tmp_path / "export"
    out.mkdir()
    (out / ONNX_FILE).write_bytes(b"graph")
    manifest = {"source": "package:m", "source_sha256": "abc", "variant": "int8", "exporter": {"recipe": 1}}
    (out / ONNX_MANIFEST).write_text(json.dumps({**manifest, "onnx_sha256": sha256_file(out / ONNX_FILE)}))
    # Then the same request is current (skipped) ...
    assert _is_current(out, manifest)
    # ... another source, variant or recipe is not ...
    assert not _is_current(out, {**manifest, "source_sha256": "def"})
    assert not _is_current(out, {**manifest, "exporter": {"recipe": 2}})
    # ... and neither is a model file changed since the export, or a folder without one
    (out / ONNX_FILE).write_bytes(b"truncated")
    assert not _is_current(out, manifest)
    assert not _is_current(tmp_path / "nothing", manifest)
