"""The categories cotwatch watches for, loaded from a versioned data file plus optional user overrides."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

BUILTIN = "taxonomy.yaml"


class Exemplar(BaseModel):
    """One example sentence; ``id`` is stable so alerts can say which exemplar matched."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str


class Cue(BaseModel):
    """A phrase pattern (case-insensitive regex) that states the category's intent outright, such as
    promising to leave a failure out of a report. A cue sharpens the trained score; it does not replace it."""

    model_config = ConfigDict(frozen=True)

    id: str
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class Category(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    definition: str
    exemplars: tuple[Exemplar, ...]
    benign_lookalikes: tuple[Exemplar, ...] = ()
    cues: tuple[Cue, ...] = ()


class Taxonomy(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    categories: dict[str, Category]
    benign_reasoning: tuple[Exemplar, ...] = ()
    cue_vetoes: tuple[Cue, ...] = Field(
        default=(), description="Patterns (e.g. rejecting a shortcut) that cancel every cue in the same sentence."
    )

    @property
    def category_ids(self) -> list[str]:
        return list(self.categories)


def _exemplars(prefix: str, texts: list[str] | None) -> tuple[Exemplar, ...]:
    return tuple(Exemplar(id=f"{prefix}:{i}", text=t.strip()) for i, t in enumerate(texts or []))


def _cues(cid: str, spec: object) -> tuple[Cue, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, dict):
        raise ValueError(f"{cid}: cues must be a mapping of name: pattern, not {type(spec).__name__}")
    return tuple(Cue(id=f"{cid}/cue:{name}", pattern=str(pattern)) for name, pattern in spec.items())


def _parse(raw: dict[str, Any], base: Taxonomy | None = None) -> Taxonomy:
    categories = dict(base.categories) if base else {}
    for cid, spec in (raw.get("categories") or {}).items():
        if spec is None:  # `category: null` in an override removes it
            categories.pop(cid, None)
            continue
        old = categories.get(cid)
        extra_pos = _exemplars(f"{cid}+", spec.get("extra_exemplars"))
        extra_neg = _exemplars(f"{cid}-neg+", spec.get("extra_benign_lookalikes"))
        categories[cid] = Category(
            id=cid,
            name=spec.get("name", old.name if old else cid),
            definition=spec.get("definition", old.definition if old else ""),
            exemplars=(_exemplars(cid, spec["exemplars"]) if "exemplars" in spec else (old.exemplars if old else ()))
            + extra_pos,
            benign_lookalikes=(
                _exemplars(f"{cid}-neg", spec["benign_lookalikes"])
                if "benign_lookalikes" in spec
                else (old.benign_lookalikes if old else ())
            )
            + extra_neg,
            cues=(_cues(cid, spec["cues"]) if "cues" in spec else (old.cues if old else ()))
            + _cues(cid, spec.get("extra_cues")),
        )
    for cid, cat in categories.items():
        if not cat.exemplars:
            raise ValueError(f"taxonomy category {cid!r} has no exemplars")
        ids = [cue.id for cue in cat.cues]
        if len(ids) != len(set(ids)):
            raise ValueError(f"taxonomy category {cid!r} repeats a cue name: {sorted(ids)}")
    benign = _exemplars("benign", raw["benign_reasoning"]) if "benign_reasoning" in raw else None
    vetoes = _cues("veto", raw["cue_vetoes"]) if "cue_vetoes" in raw else (base.cue_vetoes if base else ())
    return Taxonomy(
        version=str(raw.get("version", base.version if base else "unversioned")),
        categories=categories,
        benign_reasoning=benign if benign is not None else (base.benign_reasoning if base else ()),
        cue_vetoes=vetoes,
    )


def load_taxonomy(override_path: str | Path | None = None) -> Taxonomy:
    """The built-in taxonomy, with an optional user file merged over it (same shape; see README)."""
    text = (importlib.resources.files("cotwatch") / "data" / BUILTIN).read_text(encoding="utf-8")
    taxonomy = _parse(yaml.safe_load(text))
    if override_path:
        override = yaml.safe_load(Path(override_path).read_text(encoding="utf-8")) or {}
        taxonomy = _parse(override, base=taxonomy)
        taxonomy = taxonomy.model_copy(update={"version": f"{taxonomy.version}+{Path(override_path).stem}"})
    return taxonomy
