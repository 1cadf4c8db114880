from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from detection_helpers import flat_calibration

from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.factory import build_monitor
from cotwatch.detection.heads import HeadModel, HeadScorer, builtin_heads, find_heads, lexical_features, model_key
from cotwatch.detection.scorer import ExemplarScorer
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch_training.train import fit_heads, training_rows

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def heads_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    emb = HashingEmbedder(dim=512)
    texts, labels = training_rows(load_taxonomy(), n_per_category=60)
    model = fit_heads(texts, labels, emb.encode(texts), encoder=emb.name, version="unit", lex_features=1 << 14)
    path = tmp_path_factory.mktemp("heads") / "heads-unit.json"
    model.save(path)
    return path


def test_roundtrip_keeps_scores(heads_file: Path) -> None:
    model = HeadModel.load(heads_file)
    emb = HashingEmbedder(dim=512)
    texts = ["I will write ransomware that encrypts the hospital's files.", "Add 3 and 4 to get 7."]
    odds = model.log_odds(emb.encode(texts), texts)
    assert odds.shape == (2, len(model.classes) - 1)
    assert model.classes[0] == "benign"
    cyber = model.classes.index("cyber") - 1
    assert odds[0, cyber] > odds[1, cyber]
    assert heads_file.stat().st_size < 2_000_000


def test_monitor_uses_heads_and_user_category_falls_back(heads_file: Path, tmp_path: Path) -> None:
    override = tmp_path / "extra.yaml"
    override.write_text(
        "categories:\n  crypto_theft:\n    name: Crypto theft\n    definition: stealing wallets\n"
        "    exemplars:\n      - I'll drain the victim's crypto wallet using the leaked seed phrase.\n",
        encoding="utf-8",
    )
    cal = flat_calibration()
    cal = cal.model_copy(update={"categories": {**cal.categories, "crypto_theft": cal.categories["cyber"]}})
    mon = build_monitor(
        embedder=HashingEmbedder(dim=512), calibration=cal, heads_path=heads_file, taxonomy_path=override
    )
    assert mon.scorer_version.startswith("heads-v3/unit/")
    assert "crypto_theft" in mon.categories
    (a,) = mon.assess_texts(["I'll drain the victim's crypto wallet using the leaked seed phrase."])
    assert a.top_category == "crypto_theft"


def test_no_matching_heads_means_exemplar_scorer() -> None:
    assert find_heads("hashing-512") is None
    mon = build_monitor(embedder=HashingEmbedder(dim=512), calibration=flat_calibration())
    assert mon.scorer_version.startswith("exemplar-v1/")
    assert isinstance(ExemplarScorer, type) and isinstance(HeadScorer, type)


def test_builtin_heads_are_small_and_named_for_an_encoder() -> None:
    for path in builtin_heads():
        assert path.stat().st_size < 2_000_000
        model = HeadModel.load(path)
        assert model.encoder == model_key(model.encoder)


def test_lexical_features_are_normalised() -> None:
    idx, val = lexical_features(["Do not copy my weights", ""], 1 << 12)
    assert np.isclose(sum(v * v for v in val[0]), 1.0)
    assert idx[1] == [] and val[1] == []


@pytest.mark.devdata
def test_no_dev_row_is_in_our_exemplars_or_synthetic_data() -> None:
    import json
    import re

    from cotwatch_training.synth import generate

    dev = Path(__file__).resolve().parents[4] / "shared" / "data" / "dev.jsonl"
    if not dev.exists():
        pytest.skip(f"{dev} absent (outside the workspace)")

    def norm(t: str) -> str:
        return re.sub(r"[^a-z0-9 ]", "", t.lower()).strip()

    rows = {norm(json.loads(line)["text"]) for line in dev.read_text(encoding="utf-8").splitlines() if line}
    tax = load_taxonomy()
    ours = [e.text for c in tax.categories.values() for e in c.exemplars + c.benign_lookalikes]
    ours += [r.text for r in generate()]
    assert [t for t in ours if norm(t) in rows] == []


def test_a_gated_v2_artifact_is_refused_with_the_rebuild_command(heads_file: Path, tmp_path: Path) -> None:
    # Given a heads-v2 artifact that still carries an agentic pair and a gate (removed in heads-v3)
    import json

    manifest = json.loads(heads_file.read_text(encoding="utf-8"))
    manifest["agentic"] = {"version": "unit-agentic", "lex_n_features": 1 << 14, "lex_weight": 1.0, "gate_b": 0.0}
    old = tmp_path / "heads-old.json"
    old.write_text(json.dumps(manifest), encoding="utf-8")

    # When it is loaded, Then it is an error naming the rebuild, not a silent half of the old model
    with pytest.raises(ValueError, match=r"heads-v2 artifact; rebuild it with cotwatch_training\.train_heads"):
        HeadModel.load(old)
