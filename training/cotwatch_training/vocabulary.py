"""The generators' word lists, kept as YAML under ``data/`` so that editing a phrase is not editing code."""

from __future__ import annotations

import importlib.resources
from typing import Any

import yaml


def load_vocabulary(name: str) -> dict[str, Any]:
    """The lists in ``data/<name>.yaml``, by the lower-case name of the constant that holds them."""
    text = (importlib.resources.files("cotwatch_training") / "data" / f"{name}.yaml").read_text(encoding="utf-8")
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise ValueError(f"data/{name}.yaml must be a mapping of list names to lists")
    return loaded
