"""The fine-tuning experiment's protocol pieces (folds, capped evaluation rows, balanced sampling, figures):
pure functions, no model loaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cotwatch_training import finetune_cv as fcv
from cotwatch_training.crossval import PoolRow


def _row(source: str, label: str, category: str = "benign", text: str = "t") -> PoolRow:
    return PoolRow(text=text, label=label, category=category if label == "unsafe" else "benign", source=source)


def test_folds_are_deterministic_balanced_and_keep_a_source_whole() -> None:
    # Given sources of uneven size
    sizes = {"a": 100, "b": 60, "c": 50, "d": 40, "e": 10}
    # When they are cut into 2 folds twice
    first, second = fcv.assign_folds(sizes, 2), fcv.assign_folds(dict(reversed(sizes.items())), 2)
    # Then the assignment does not depend on input order, every source has one fold, and loads are close
    assert first == second
    assert set(first) == set(sizes)
    loads = [sum(n for s, n in sizes.items() if first[s] == k) for k in range(2)]
    assert sorted(loads) == [120, 140]


def test_folds_refuse_impossible_splits() -> None:
    with pytest.raises(ValueError, match="cannot fill"):
        fcv.assign_folds({"a": 1}, 2)
    with pytest.raises(ValueError, match="at least 2"):
        fcv.assign_folds({"a": 1, "b": 2}, 1)


def test_cap_rows_keeps_at_most_cap_per_source_and_label() -> None:
    # Given 5 benign and 2 unsafe rows of one source
    rows = [_row("s", "benign") for _ in range(5)] + [_row("s", "unsafe", "cyber") for _ in range(2)]
    # When capped at 3 per (source, label)
    kept = fcv.cap_rows(rows, 3, seed=1)
    # Then 3 benign + both unsafe remain, in pool order, and the choice is reproducible
    assert [rows[i].label for i in kept].count("benign") == 3
    assert [rows[i].label for i in kept].count("unsafe") == 2
    assert kept == sorted(kept) == fcv.cap_rows(rows, 3, seed=1)


def test_sampling_weights_balance_label_topic_and_source() -> None:
    # Given a big benign code source, a small benign reasoning source and two unsafe categories of uneven size
    rows = (
        [_row("mbpp", "benign") for _ in range(90)]
        + [_row("gsm8k", "benign") for _ in range(10)]
        + [_row("x", "unsafe", "cyber") for _ in range(30)]
        + [_row("y", "unsafe", "bio_chem") for _ in range(3)]
    )
    # When weighted
    w = fcv.sampling_weights(rows)
    # Then each label has half the mass, each topic within a label a quarter, whatever the row counts
    assert w.sum() == pytest.approx(1.0)
    assert w[:90].sum() == pytest.approx(0.25)
    assert w[90:100].sum() == pytest.approx(0.25)
    assert w[100:130].sum() == pytest.approx(0.25)
    assert w[130:].sum() == pytest.approx(0.25)


def test_topic_of_groups_benign_by_form_and_unsafe_by_category() -> None:
    assert fcv.topic_of(_row("cwe", "benign")) == "security"
    assert fcv.topic_of(_row("marco_o1_cot", "benign")) == "reasoning"
    assert fcv.topic_of(_row("never-seen", "benign")) == "chat"
    assert fcv.topic_of(_row("cwe", "unsafe", "cyber")) == "cyber"


def test_summarise_reports_pooled_category_and_source_figures() -> None:
    # Given margins (score − fold threshold): source a has one benign over its threshold
    rows = [_row("a", "benign"), _row("a", "benign"), _row("a", "unsafe", "cyber"), _row("b", "unsafe", "cyber")]
    margin = np.array([-1.0, 0.5, 1.0, -2.0])
    # When summarised
    out = fcv.summarise(rows, margin, bootstrap=20)
    # Then: a's unsafe outranks both benign rows (AUROC 1), b's ranks under both (0); a's FPR is 1 of 2
    assert out["auroc"] == pytest.approx(0.5)
    assert out["sources"]["a"]["auroc"] == 1.0
    assert out["sources"]["b"]["auroc"] == 0.0
    assert out["sources"]["a"]["fpr_at_thr"] == 0.5
    assert out["worst_unsafe_source"] == ["b", 0.0]
    assert out["worst_benign_source"] == ["a", 0.5]
    assert out["tpr_at_fold_thr"] == 0.5
    assert out["categories"]["cyber"]["n"] == 2


def test_report_reprints_a_saved_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a finished run's results.json
    rows = [_row("a", "benign"), _row("a", "unsafe", "cyber"), _row("b", "benign")]
    res = fcv.summarise(rows, np.array([-1.0, 1.0, -0.5]), bootstrap=5)
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "results.json").write_text(
        json.dumps({"folds": {"a": 0, "b": 1}, "results": {"finetuned": res, "shipped": res}})
    )
    # When --report is asked for
    code = fcv.main(["--run", "r1", "--out-root", str(tmp_path), "--report"])
    # Then the tables print, one line per source with its fold
    printed = capsys.readouterr().out
    assert code == 0
    assert "| a (0) | 1 / 1 |" in printed
    assert "| b (1) | 0 / 1 |" in printed


def test_missing_pool_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = fcv.main(["--run", "x", "--pool", str(tmp_path / "nope"), "--out-root", str(tmp_path)])
    assert code == 2
    assert "not found" in capsys.readouterr().err


def test_read_written_validates_rows(tmp_path: Path) -> None:
    (tmp_path / "w.jsonl").write_text(json.dumps({"text": "x", "label": "benign", "source": "cotwatch-w"}) + "\n\n")
    assert [r.source for r in fcv.read_written(tmp_path)] == ["cotwatch-w"]


def test_no_train_summarises_only_the_folds_already_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a pool of four sources (two folds) and a saved fold 0 only; shipped scores come from a fake
    pool = tmp_path / "pool"
    (pool / "train").mkdir(parents=True)
    rows = [
        {"text": "a-b", "label": "benign", "source": "a"},
        {"text": "a-u", "label": "unsafe", "category": "cyber", "source": "a"},
        {"text": "b-b", "label": "benign", "source": "b"},
        {"text": "b-u", "label": "unsafe", "category": "cyber", "source": "b"},
    ]
    (pool / "train" / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n")
    (pool / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in rows[2:]) + "\n")
    shipped = {"a-b": 0.1, "a-u": 0.9, "b-b": 0.2, "b-u": 0.8}
    monkeypatch.setattr(fcv, "_shipped_scores", lambda _pool, texts, _cache=None: np.array([shipped[t] for t in texts]))
    folds = fcv.assign_folds({"a": 2, "b": 2}, 2)
    held_a = folds["a"]
    run_dir = tmp_path / "out" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / f"fold{held_a}.json").write_text(json.dumps({"thr": 0.0, "scores": [-1.0, 2.0]}))
    # When summarised without training
    code = fcv.main(
        ["--run", "r", "--pool", str(pool), "--out-root", str(tmp_path / "out"), "--no-train", "--folds", "2"]
    )
    # Then only source a's rows are reported, for both scorers, and the scored folds are recorded
    saved = json.loads((run_dir / "results.json").read_text())
    assert code == 0
    assert saved["folds_scored"] == [held_a]
    assert set(saved["results"]["finetuned"]["sources"]) == {"a"}
    assert saved["results"]["finetuned"]["auroc"] == 1.0
    assert set(saved["results"]["shipped"]["sources"]) == {"a"}
    assert "| a (" in capsys.readouterr().out
