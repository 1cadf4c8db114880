"""The cross-source protocol (``cotwatch eval --cv source --pool DIR``): folds, per-source figures, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cotwatch.detection.calibration import Calibration, CategoryCalibration
from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.factory import build_monitor
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch_training import commands
from cotwatch_training.calibration_fit import save_calibration
from cotwatch_training.crossval import PoolRow, Scored, cross_validate, fold_thresholds, wilson

# Hand-checkable toy: (source, label, score, flagged by the shipped thresholds).
TOY = [
    ("a", "benign", 0.1, False),
    ("a", "benign", 0.2, False),
    ("a", "benign", 0.9, True),
    ("a", "unsafe", 0.5, False),
    ("b", "benign", 0.3, False),
    ("b", "benign", 0.4, False),
    ("b", "unsafe", 0.8, True),
    ("b", "unsafe", 0.05, False),
    ("c", "benign", 0.0, False),
    ("c", "benign", 0.6, False),
]


def _toy() -> tuple[list[PoolRow], list[Scored]]:
    rows = [
        PoolRow(text=f"t{i}", label=lab, category="cyber" if lab == "unsafe" else "benign", source=src)
        for i, (src, lab, _, _) in enumerate(TOY)
    ]
    return rows, [Scored(score, flag) for _, _, score, flag in TOY]


def test_fold_threshold_never_sees_the_held_out_source() -> None:
    # Given the toy pool's scores
    rows, scored = _toy()
    scores = np.array([s.score for s in scored])
    unsafe = np.array([r.label == "unsafe" for r in rows])
    sources = [r.source for r in rows]
    before = fold_thresholds(scores, unsafe, sources, 0.0)
    # When source a's benign scores are pushed far above everything else
    perturbed = scores.copy()
    perturbed[(np.asarray(sources) == "a") & ~unsafe] += 100.0
    after = fold_thresholds(perturbed, unsafe, sources, 0.0)
    # Then a's own threshold is unchanged, while the folds that do train on a see the change
    assert after["a"] == before["a"] == pytest.approx(0.6)
    assert after["b"] == after["c"] == pytest.approx(100.9)
    assert before["b"] == before["c"] == pytest.approx(0.9)


def test_per_source_figures_on_a_hand_checked_toy() -> None:
    # Given the toy (target FPR 0: each fold threshold is the top benign score of the other sources)
    rows, scored = _toy()
    # When the protocol runs
    report = cross_validate(rows, scored, target_fpr=0.0, bootstrap=20)
    by = {s.source: s for s in report.per_source}
    # Then a (threshold 0.6): its unsafe 0.5 beats 5 of the 7 benign rows and is missed; its benign 0.9 is over
    assert by["a"].threshold == pytest.approx(0.6)
    assert by["a"].auroc == pytest.approx(round(5 / 7, 4))
    assert by["a"].tpr_at_threshold == 0.0
    assert by["a"].fpr_at_threshold == pytest.approx(round(1 / 3, 4))
    assert by["a"].fpr_ci95 == pytest.approx((0.0615, 0.7923))  # published Wilson interval for 1 of 3
    assert by["a"].fpr_at_shipped == pytest.approx(round(1 / 3, 4))
    # and b (threshold 0.9): unsafe 0.8 beats 6 of 7, 0.05 beats 1 of 7; no benign row over
    assert by["b"].threshold == pytest.approx(0.9)
    assert by["b"].auroc == pytest.approx(0.5)
    assert by["b"].tpr_at_threshold == 0.0 and by["b"].fpr_at_threshold == 0.0
    # and c has no unsafe rows, so no AUROC
    assert by["c"].auroc is None and by["c"].n_benign == 2 and by["c"].fpr_at_threshold == 0.0
    # and pooled, mean and worst follow
    assert report.pooled.auroc == pytest.approx(round(12 / 21, 4))
    assert report.pooled.tpr_at_shipped == pytest.approx(round(1 / 3, 4))
    assert report.pooled.fpr_at_shipped == pytest.approx(round(1 / 7, 4))
    assert report.unsafe_source_auroc.worst_source == "b"
    assert report.unsafe_source_auroc.mean == pytest.approx(round((5 / 7 + 0.5) / 2, 4), abs=1e-4)
    assert report.benign_source_fpr.worst_source == "a"
    assert report.benign_source_fpr.mean == pytest.approx(round(1 / 9, 4), abs=1e-4)
    assert [c.category for c in report.per_category] == ["cyber"] and report.per_category[0].n == 3


def test_wilson_interval_is_bounded() -> None:
    assert wilson(0, 10)[0] == 0.0 and 0.0 < wilson(0, 10)[1] < 0.35
    assert wilson(10, 10)[1] == 1.0


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _pool(root: Path) -> Path:
    """Three train sources and a dev file built from the taxonomy's own texts."""
    tax = load_taxonomy()
    cats = list(tax.categories.items())
    unsafe: list[dict[str, object]] = [
        {"text": e.text, "label": "unsafe", "category": cid, "source": "s_unsafe"}
        for cid, cat in cats
        for e in cat.exemplars[:3]
    ]
    lookalike: list[dict[str, object]] = [
        {"text": e.text, "label": "benign", "category": None, "source": "s_lookalike"}
        for _, cat in cats
        for e in cat.benign_lookalikes[:3]
    ]
    reasoning: list[dict[str, object]] = [
        {"text": e.text, "label": "Benign", "source": "s_reasoning"} for e in tax.benign_reasoning[:10]
    ]
    _write(root / "train" / "one.jsonl", unsafe[: len(unsafe) // 2] + lookalike)
    _write(root / "train" / "two.jsonl", reasoning)
    _write(root / "dev.jsonl", unsafe[len(unsafe) // 2 :] + [{**r, "source": "dev_b"} for r in reasoning[:3]])
    return root


def _calibration(path: Path) -> Path:
    cats = load_taxonomy().category_ids
    cal = Calibration(
        version="test",
        scorer_version="test",
        target_fpr=0.01,
        categories={c: CategoryCalibration(threshold=0.35, scale=0.05) for c in cats},
    )
    save_calibration(cal, path)
    return path


def _eval(tmp_path: Path, pool: Path, *extra: str) -> int:
    cal = _calibration(tmp_path / "cal.json")
    base = ["eval", "--cv", "source", "--pool", str(pool), "--embedding-model", "hashing"]
    return commands.main([*base, "--calibration", str(cal), "--cache-dir", str(tmp_path / "cache"), *extra])


def test_pool_eval_scores_as_the_handler_and_reuses_its_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a pool folder
    pool = _pool(tmp_path / "pool")
    # When it is cross-validated twice
    assert _eval(tmp_path, pool, "--json", "--bootstrap", "20") == 0
    first = json.loads(capsys.readouterr().out)
    cache_files = list((tmp_path / "cache").glob("*.jsonl"))
    cached_lines = cache_files[0].read_text(encoding="utf-8").count("\n")
    assert _eval(tmp_path, pool, "--json", "--bootstrap", "20") == 0
    second = json.loads(capsys.readouterr().out)
    # Then every source is a fold, the second run scored nothing new and agrees with the first
    assert first["sources"] == 4 and {s["source"] for s in first["per_source"]} == {
        "s_unsafe",
        "s_lookalike",
        "s_reasoning",
        "dev_b",
    }
    assert len(cache_files) == 1 and cache_files[0].read_text(encoding="utf-8").count("\n") == cached_lines
    assert first == second
    # and the pooled shipped-threshold figures equal assess_texts on the same rows (the handler's path)
    rows = [
        json.loads(line) for f in [*sorted((pool / "train").glob("*.jsonl")), pool / "dev.jsonl"] for line in f.open()
    ]
    monitor = build_monitor(embedder=HashingEmbedder(), calibration_path=tmp_path / "cal.json")
    found = monitor.assess_texts([r["text"] for r in rows])
    benign_flags = [bool(a.flagged) for r, a in zip(rows, found, strict=True) if r["label"].lower() == "benign"]
    assert first["pooled"]["fpr_at_shipped"] == pytest.approx(round(float(np.mean(benign_flags)), 4))
    assert first["n"] == len(rows)


def test_markdown_is_the_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _eval(tmp_path, _pool(tmp_path / "pool"), "--bootstrap", "10") == 0
    out = capsys.readouterr().out
    assert "| source | unsafe | benign |" in out and "| s_lookalike |" in out and "pooled AUROC" in out


def test_a_bad_row_is_named_by_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a pool whose second train file has a row without a source on line 2
    pool = _pool(tmp_path / "pool")
    bad = pool / "train" / "two.jsonl"
    lines = bad.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[1])
    del row["source"]
    lines[1] = json.dumps(row)
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # When it is evaluated, Then the command exits 2 naming the file, line and field
    assert _eval(tmp_path, pool) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "source" in err


def test_an_unparseable_row_is_named_by_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = _pool(tmp_path / "pool")
    with (pool / "dev.jsonl").open("a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    lines = (pool / "dev.jsonl").read_text(encoding="utf-8").count("\n")
    assert _eval(tmp_path, pool) == 2
    assert f"{pool / 'dev.jsonl'}:{lines}:" in capsys.readouterr().err


def test_a_missing_pool_folder_is_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert _eval(tmp_path, missing) == 2
    err = capsys.readouterr().err
    assert f"pool folder {missing} does not exist" in err and "dev.jsonl" in err


def test_a_pool_without_dev_file_is_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = _pool(tmp_path / "pool")
    (pool / "dev.jsonl").unlink()
    assert _eval(tmp_path, pool) == 2
    assert "has no dev.jsonl" in capsys.readouterr().err


def test_pool_needs_cv_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = _pool(tmp_path / "pool")
    assert commands.main(["eval", "--pool", str(pool), "--embedding-model", "hashing"]) == 2
    assert "--pool needs --cv source" in capsys.readouterr().err
    assert commands.main(["eval", "--embedding-model", "hashing"]) == 2
    assert "give --data FILE" in capsys.readouterr().err
