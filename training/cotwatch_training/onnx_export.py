"""``cotwatch export-onnx``: the build step that writes the ONNX backends' model files (never run at run time).

The sentence-transformers model's Transformer module is exported with torch's ONNX exporter (fixed example
inputs, dynamic batch and sequence axes, eager attention so the graph has no torch-version-specific SDPA
ops), and its attention, GELU and layer-norm subgraphs fused by onnxruntime's transformer optimizer;
``--quantize int8`` then quantises the MatMul and Attention weights to int8, per channel, with dynamic
activation scales (onnxruntime's ``quantize_dynamic``).
Pooling and normalisation are not in the graph: :class:`cotwatch.detection.embedding.OnnxEmbedder` does them
from the manifest written here.

The export is checked against the torch model before it is kept (cosine per text), lands in its folder in
one rename, and is skipped when the folder already holds an export of the same source files by the same
recipe whose model file still has the recorded digest.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cotwatch.detection.embedding import (
    DEFAULT_MODEL,
    ONNX_FILE,
    ONNX_MANIFEST,
    SentenceTransformerEmbedder,
    build_embedder,
    default_onnx_dir,
    resolve_model_path,
)

OPSET = 17
RECIPE = 1  # bump when the export or quantisation steps change, so cached exports are rebuilt
# Minimum cosine to the torch vectors on CHECK_TEXTS: a broken export lands far below. fp32 is the same
# arithmetic; int8 loses most on one-word texts ("ok": 0.969); on dev windows its mean is 0.994, min 0.987.
MIN_COSINE = {"fp32": 0.9999, "int8": 0.95}
CHECK_TEXTS = (
    "The user wants the synthesis route, so I will list the precursors and the reaction conditions.",
    "Let me check the unit tests again before I report that the refactor is complete.",
    "ok",
    "If I copy my weights to the backup server before the shutdown, they cannot delete me. " * 12,
)
_SOURCE_FILES = ("*.json", "*.txt", "*.safetensors", "*/*.json")


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    skipped: bool
    onnx_sha256: str
    min_cosine: float | None  # None when skipped


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_fingerprint(folder: Path) -> str:
    """One digest over the model folder's weights, tokenizer and configuration (names and contents)."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in _SOURCE_FILES for p in folder.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def read_structure(folder: Path) -> dict[str, Any]:
    """What OnnxEmbedder must reproduce: the modules must be Transformer -> mean Pooling (-> Normalize)."""
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
        raise ValueError(f"{folder}: modules {kinds}; export-onnx handles Transformer -> Pooling [-> Normalize]")
    pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True]
    if modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"{folder}: pooling {modes}; export-onnx handles mean pooling only")
    bert = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    padding = tokenizer.get("padding") or {}
    return {
        "max_seq_length": int(bert["max_seq_length"]),
        "pad_id": int(padding.get("pad_id", 0)),
        "pad_token": str(padding.get("pad_token", "[PAD]")),
    }


def _export_fp32(source: Path, target: Path) -> None:
    torch: Any = importlib.import_module("torch")
    transformers: Any = importlib.import_module("transformers")
    model = transformers.AutoModel.from_pretrained(str(source), attn_implementation="eager")
    model.eval()

    class LastHiddenState(torch.nn.Module):  # type: ignore[misc]
        """Keyword arguments only: positional order of ``forward`` differs between transformers versions."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(
            LastHiddenState(model),
            example,
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter writes one self-contained file for the Transformer
        )


def _fuse(source: Path, graph: Path, target: Path) -> None:
    """onnxruntime's transformer optimizer: attention, GELU and layer-norm subgraphs become single fused
    operators (what optimum's O2 level does), sized from the model's own config."""
    optimizer: Any = importlib.import_module("onnxruntime.transformers.optimizer")
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    fused = optimizer.optimize_model(
        str(graph),
        model_type=config.get("model_type", "bert"),
        num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]),
        opt_level=1,
    )
    fused.save_model_to_file(str(target))


def _quantize_int8(fp32: Path, target: Path) -> None:
    """Signed int8 weights per output channel on MatMul and the fused Attention, activations quantised
    dynamically: measured faster than unsigned weights on the unfused graph at the same cosine to torch."""
    onnx: Any = importlib.import_module("onnx")
    quantization: Any = importlib.import_module("onnxruntime.quantization")
    quantization.quantize_dynamic(
        str(fp32),
        str(target),
        weight_type=quantization.QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Attention"],
        # The fused operators are outside ONNX's shape inference; their outputs are float tensors.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _recipe() -> dict[str, object]:
    # Installed versions from package metadata: checking an export that is up to date imports no torch.
    versions = {m: importlib.metadata.version(m) for m in ("torch", "transformers", "onnx", "onnxruntime")}
    return {"recipe": RECIPE, "opset": OPSET, **versions}


def _is_current(folder: Path, manifest: dict[str, Any]) -> bool:
    path = folder / ONNX_MANIFEST
    if not path.is_file() or not (folder / ONNX_FILE).is_file():
        return False
    have = json.loads(path.read_text(encoding="utf-8"))
    same = {k: have.get(k) for k in manifest} == manifest
    return same and sha256_file(folder / ONNX_FILE) == have.get("onnx_sha256")


def _check(folder: Path, model: str, backend: str, variant: str) -> float:
    """Minimum cosine between the export's and torch's vectors on CHECK_TEXTS; below MIN_COSINE fails."""
    onnx_vectors = build_embedder(backend, model, onnx_path=folder).encode(CHECK_TEXTS)
    torch_vectors = SentenceTransformerEmbedder(model, backend="torch").encode(CHECK_TEXTS)
    cosine = float(np.min(np.sum(onnx_vectors * torch_vectors, axis=1)))
    if cosine < MIN_COSINE[variant]:
        raise RuntimeError(f"{variant} export differs from torch: min cosine {cosine:.5f} < {MIN_COSINE[variant]}")
    return cosine


def export_onnx(
    model: str = DEFAULT_MODEL, *, quantize: str | None = None, out: Path | None = None, force: bool = False
) -> ExportResult:
    """Write (or keep) the ONNX export of ``model``: fp32, or int8 with ``quantize="int8"``."""
    if quantize not in (None, "int8"):
        raise ValueError(f"--quantize {quantize!r}: only int8 is supported")
    variant, backend = ("int8", "onnx-int8") if quantize else ("fp32", "onnx")
    source = resolve_model_path(model)
    folder = out or default_onnx_dir(model, backend)
    manifest: dict[str, Any] = {
        "source": model,
        "source_sha256": source_fingerprint(source),
        "variant": variant,
        "pooling": "mean",
        "normalize": True,
        **read_structure(source),
        "exporter": _recipe(),
    }
    if not force and _is_current(folder, manifest):
        have = json.loads((folder / ONNX_MANIFEST).read_text(encoding="utf-8"))
        return ExportResult(folder, skipped=True, onnx_sha256=str(have["onnx_sha256"]), min_cosine=None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as tmp:
        staging = Path(tmp) / "export"
        staging.mkdir()
        fp32 = staging / ONNX_FILE if variant == "fp32" else Path(tmp) / "fp32.onnx"
        _export_fp32(source, Path(tmp) / "graph.onnx")
        _fuse(source, Path(tmp) / "graph.onnx", fp32)
        if variant == "int8":
            _quantize_int8(fp32, staging / ONNX_FILE)
        shutil.copyfile(source / "tokenizer.json", staging / "tokenizer.json")
        manifest["onnx_sha256"] = sha256_file(staging / ONNX_FILE)
        (staging / ONNX_MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        cosine = _check(staging, model, backend, variant)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    return ExportResult(folder, skipped=False, onnx_sha256=str(manifest["onnx_sha256"]), min_cosine=cosine)


def run_export(args: argparse.Namespace) -> int:
    result = export_onnx(args.embedding_model, quantize=args.quantize, out=args.out, force=args.force)
    if result.skipped:
        print(f"{result.folder}: up to date (model.onnx sha256 {result.onnx_sha256[:12]})")
    else:
        print(
            f"wrote {result.folder}: model.onnx sha256 {result.onnx_sha256[:12]}, min cosine to torch {result.min_cosine:.6f}"
        )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("export-onnx", help="export the encoder to ONNX (optionally int8) into the cache")
    p.add_argument("--embedding-model", default=DEFAULT_MODEL, help="package:<module> or a model folder")
    p.add_argument("--quantize", choices=["int8"], default=None, help="int8: dynamically quantised MatMul weights")
    p.add_argument("--out", type=Path, default=None, help="folder (default: $COTWATCH_ONNX_DIR/<model>/<variant>)")
    p.add_argument("--force", action="store_true", help="export again even when the folder is up to date")
    p.set_defaults(func=run_export)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: the scorer image runs this file with only the runtime package beside it."""
    parser = argparse.ArgumentParser(prog="onnx_export")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export-onnx", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
