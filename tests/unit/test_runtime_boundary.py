"""What ships is the runtime package only: nothing the Lambda handlers can reach imports the developer rig,
the training package or their libraries, and the image and layer builds copy ``shared/cotwatch`` alone.

The import graph is walked statically (ast), so a module imported inside a function counts as well.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME_ROOT = REPO / "shared"
HANDLERS = sorted((REPO / "functions").glob("*/app.py"))
# Top-level packages that must never load in a Lambda container.
FORBIDDEN = frozenset({"cotwatch_local", "cotwatch_training", "kafka", "moto", "sklearn"})


def imported_modules(path: Path) -> Iterator[str]:
    """Every module ``path`` imports (absolute names), including ``importlib.import_module("literal")``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (
        ".".join(path.relative_to(RUNTIME_ROOT).with_suffix("").parts[:-1]) if path.is_relative_to(RUNTIME_ROOT) else ""
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield module
            # `from cotwatch import observability` imports a submodule.
            yield from (f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def runtime_file(module: str, root: Path) -> Path | None:
    """The file of a ``cotwatch`` module under ``root``, or None for other packages and non-modules."""
    if module != "cotwatch" and not module.startswith("cotwatch."):
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable_imports(entry_points: list[Path], root: Path) -> dict[str, Path]:
    """Every module imported by the entry points or by the runtime modules they reach -> a file importing it."""
    seen_files: set[Path] = set()
    found: dict[str, Path] = {}
    todo = list(entry_points)
    while todo:
        path = todo.pop()
        if path in seen_files:
            continue
        seen_files.add(path)
        for module in imported_modules(path):
            found.setdefault(module, path)
            target = runtime_file(module, root)
            if target is not None:
                todo.append(target)
                # Importing a.b.c runs a/__init__ and a/b/__init__ first.
                parts = module.split(".")
                todo.extend(p for i in range(1, len(parts)) if (p := runtime_file(".".join(parts[:i]), root)))
    return found


def forbidden_in(found: dict[str, Path]) -> dict[str, str]:
    return {m: str(p.relative_to(REPO)) for m, p in found.items() if m.split(".")[0] in FORBIDDEN}


def test_there_are_handlers_to_check() -> None:
    assert {p.parent.name for p in HANDLERS} == {
        "score_traces",
        "rollup_counters",
        "alerts_api",
        "chat_notifier",
        "flush_digests",
    }


def test_nothing_reachable_from_a_handler_imports_the_rig_training_or_their_libraries() -> None:
    # Given the import graph from every functions/*/app.py through the runtime package
    found = reachable_imports(HANDLERS, RUNTIME_ROOT)

    # Then it reaches the runtime's own modules and none of the forbidden ones
    assert "cotwatch.score_traces" in found
    assert "cotwatch.detection.monitor" in found
    assert forbidden_in(found) == {}


def test_the_walk_finds_a_forbidden_import_hidden_inside_a_function(tmp_path: Path) -> None:
    # Given a runtime module that imports the rig lazily, two modules away from the handler
    package = tmp_path / "cotwatch"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "wiring.py").write_text("from cotwatch.helper import go\n")
    (package / "helper.py").write_text("def go() -> None:\n    from cotwatch_local.demo import run_demo\n")
    handler = tmp_path / "app.py"
    handler.write_text("from cotwatch import wiring\n")

    # When the graph is walked
    found = reachable_imports([handler], tmp_path)

    # Then the lazy import is reported, with the module that makes it
    assert found["cotwatch_local.demo"] == package / "helper.py"


def test_the_runtime_folder_holds_only_the_runtime_package() -> None:
    # The layer's ContentUri is shared/ (template.yaml): anything else there would ship too.
    tracked = subprocess.run(
        ["git", "ls-files", "shared"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked
    assert {Path(p).parts[1] for p in tracked} == {"cotwatch"}


def test_the_scorer_image_copies_only_the_runtime_package_and_its_handler() -> None:
    dockerfile = (REPO / "functions" / "score_traces" / "Dockerfile").read_text(encoding="utf-8")
    copies = re.findall(r"^COPY\s+(\S+)\s+(\S+)", dockerfile, flags=re.MULTILINE)
    # The ONNX export script (and a copy of the package for it) go to /tmp/export only, which the step that
    # runs them deletes: the training package never ships, only the exported model files do.
    build_only = [source for source, target in copies if target.startswith("/tmp/")]
    shipped = [source for source, target in copies if not target.startswith("/tmp/")]
    assert build_only == ["pyproject.toml", "training/cotwatch_training/onnx_export.py", "shared/cotwatch"]
    assert shipped == ["shared/cotwatch", "functions/score_traces/app.py"]
    assert "&& rm -rf /tmp/export" in dockerfile


def test_the_onnx_export_script_needs_only_the_runtime_package() -> None:
    # The image runs onnx_export.py with shared/cotwatch beside it and no cotwatch_training installed.
    script = REPO / "training" / "cotwatch_training" / "onnx_export.py"
    own = {m.split(".")[0] for m in imported_modules(script)}
    assert "cotwatch_training" not in own
    assert own & FORBIDDEN == set()


def test_the_image_build_context_lets_in_only_what_the_dockerfiles_copy() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # ignore everything, then let in
    let_in = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    assert let_in == [
        "pyproject.toml",
        "shared/cotwatch",
        "training/cotwatch_training/onnx_export.py",
        "functions/score_traces/app.py",
        "functions/rollup_counters/app.py",
    ]


def test_the_layer_build_copies_only_the_runtime_package() -> None:
    makefile = (REPO / "infra" / "layer" / "Makefile").read_text(encoding="utf-8")
    copies = re.findall(r"^\s+cp\s+(?:-\S+\s+)*(\S+)\s+(\S+)", makefile, flags=re.MULTILINE)
    assert copies == [("cotwatch", '"$(ARTIFACTS_DIR)/python/cotwatch"')]


@pytest.mark.parametrize("extra", ["ml", "onnx", "train", "local", "rollup"])
def test_the_rollup_image_installs_the_rollup_extra_only(extra: str) -> None:
    # The roll-up image gets pyarrow, none of the scorer's model stack, the rig or training code.
    dockerfile = (REPO / "functions" / "rollup_counters" / "Dockerfile").read_text(encoding="utf-8")
    installs = f"['optional-dependencies']['{extra}']" in dockerfile
    assert installs is (extra == "rollup")


@pytest.mark.parametrize("extra", ["ml", "onnx", "train", "local"])
def test_the_image_installs_the_ml_and_onnx_extras_only(extra: str) -> None:
    dockerfile = (REPO / "functions" / "score_traces" / "Dockerfile").read_text(encoding="utf-8")
    installs = f"['optional-dependencies']['{extra}']" in dockerfile
    assert installs is (extra in ("ml", "onnx"))
