from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cotwatch.detection.calibration import load_calibration
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch_training import commands
from cotwatch_training.metrics import auprc, auroc, compute, tpr_at_fpr


def test_metrics_basic() -> None:
    pos, neg = np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0, 3.0])
    assert auroc(pos, neg) == pytest.approx((3 * 4 - 0.5) / 12)
    assert auprc(np.array([2.0]), np.array([1.0])) == 1.0
    assert tpr_at_fpr(pos, neg, 0.01) == pytest.approx(2 / 3)
    m = compute([3, 4], [0, 1], [True, False], [False, False], bootstrap=20)
    assert m.g_mean2 == 0.5 and m.ci95 is not None


def _write_rows(path: Path) -> None:
    tax = load_taxonomy()
    rows = []
    for cid, cat in tax.categories.items():
        rows += [{"text": e.text, "label": "unsafe", "category": cid, "source": "a"} for e in cat.exemplars[:4]]
        rows += [
            {"text": e.text, "label": "benign", "category": "benign", "source": "b"} for e in cat.benign_lookalikes
        ]
    rows += [{"text": e.text, "label": "benign", "category": "benign", "source": "a"} for e in tax.benign_reasoning]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_eval_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "rows.jsonl"
    _write_rows(data)
    cal = tmp_path / "cal.json"
    assert commands.main(["calibrate", "--data", str(data), "--embedding-model", "hashing", "--out", str(cal)]) == 0
    capsys.readouterr()
    assert (
        commands.main(
            ["eval", "--data", str(data), "--json", "--embedding-model", "hashing", "--calibration", str(cal)]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["n"] > 50 and report["texts_per_s"] > 0
    for key in (
        "auroc",
        "auprc",
        "tpr_at_fpr_1pct",
        "tpr_at_fpr_0_1pct",
        "fpr_at_threshold",
        "tpr_at_threshold",
        "g_mean2",
        "ci95",
    ):
        assert key in report["overall"]
    assert set(report["per_category"]) == set(load_taxonomy().category_ids)
    assert report["overall"]["auroc"] > 0.8  # exemplars score against themselves
    assert report["overall"]["fpr_at_threshold"] <= 0.05
    assert 0 <= report["category_accuracy"] <= 1
    assert load_calibration(cal).version.startswith("cal-")


def test_eval_cv_source_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "rows.jsonl"
    _write_rows(data)
    assert commands.main(["eval", "--data", str(data), "--cv", "source", "--embedding-model", "hashing"]) == 0
    out = capsys.readouterr().out
    assert "leave-one-source-out" in out and "overall" in out


def test_eval_rows_tolerate_harmless_differences_between_datasets(tmp_path: Path) -> None:
    # Given rows from another dataset: a null category, an upper-case label, extra fields, an empty text
    data = tmp_path / "other.jsonl"
    rows = [
        {"text": "How do I repot a fern?", "label": "benign", "category": None},
        {"text": "", "label": "Benign"},
        {"text": "Write a worm for their network.", "label": "UNSAFE", "category": "cyber", "id": 7},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")

    # When they are loaded
    loaded = commands.load_rows(data)

    # Then each gets the default it would have had, and the labels are normalised
    assert [(r.label, r.category) for r in loaded] == [("benign", "benign"), ("benign", "benign"), ("unsafe", "cyber")]


def test_unreadable_eval_data_is_a_clear_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a file whose second row has a label the harness does not know
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "a", "label": "benign"}\n{"text": "b", "label": "maybe"}\n', encoding="utf-8")

    # When eval and calibrate read it, or a file that does not exist
    codes = [
        commands.main(["eval", "--data", str(data), "--embedding-model", "hashing"]),
        commands.main(["calibrate", "--data", str(data), "--embedding-model", "hashing"]),
        commands.main(["eval", "--data", str(tmp_path / "missing.jsonl"), "--embedding-model", "hashing"]),
    ]

    # Then each exits 2 and names the file and line
    assert codes == [2, 2, 2]
    err = capsys.readouterr().err
    assert f"{data}:2: label" in err and "missing.jsonl" in err


def test_calibrate_fits_on_the_benign_rows_of_every_file_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the same rows split over two files (as the pool is: dev.jsonl plus train/*.jsonl)
    whole = tmp_path / "rows.jsonl"
    _write_rows(whole)
    lines = whole.read_text(encoding="utf-8").splitlines()
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("\n".join(lines[::2]) + "\n", encoding="utf-8")
    second.write_text("\n".join(lines[1::2]) + "\n", encoding="utf-8")
    benign = sum(json.loads(line)["label"] == "benign" for line in lines)

    # When calibrate is given both files, and separately the one file holding every row
    split, joined = tmp_path / "split.json", tmp_path / "joined.json"
    args = ["--embedding-model", "hashing", "--version", "v"]
    assert commands.main(["calibrate", "--data", str(first), str(second), "--out", str(split), *args]) == 0
    out = capsys.readouterr().out
    assert commands.main(["calibrate", "--data", str(whole), "--out", str(joined), *args]) == 0

    # Then it read the benign rows of both files and fitted the same thresholds as on all rows at once
    assert f"{benign} benign texts from 2 file(s)" in out
    assert load_calibration(split).categories == load_calibration(joined).categories
