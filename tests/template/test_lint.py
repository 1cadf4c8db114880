"""cfn-lint over template.yaml (what `sam validate --lint` runs) and over its SAM translation."""

from __future__ import annotations

import json
from typing import Any

from cfnlint.api import lint, lint_file  # type: ignore[import-untyped]
from cfnlint.config import ManualArgs  # type: ignore[import-untyped]
from tests.template.support import TEMPLATE_PATH

REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]


def test_the_sam_template_is_lint_clean() -> None:
    # Given template.yaml as committed
    # When cfn-lint checks it in a few regions (SAM resources are validated against SAM's schema)
    matches = lint_file(TEMPLATE_PATH, config=ManualArgs(regions=REGIONS))
    # Then it reports nothing: no error, no warning
    assert [str(m) for m in matches] == []


def test_the_translated_template_is_lint_clean(translated: dict[str, Any]) -> None:
    # Given the plain CloudFormation the SAM translator makes of it (functions, versions, alias, rule)
    # When cfn-lint checks that as well
    matches = lint(json.dumps(translated), config=ManualArgs(regions=REGIONS))
    # Then it is clean too
    assert [str(m) for m in matches] == []
