"""Intent cues: the taxonomy's phrase patterns, matched against each window's text.

An embedding model is good at topic and poor at stance: "I'll tell them the backup was verified" and "I'll
tell them the verification failed" sit close together. A chain of thought that misbehaves often says so
in plain words ("I won't mention the checksum failure", "turn off the command logging"), so a matched cue
raises that category's score, but only where the trained score already leans towards the category, and
not in a sentence that rejects the idea ("would be cheating", "it isn't my call": the taxonomy's
``cue_vetoes``). The matched cue ids go into the alert's evidence, so a reader sees which phrase counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cotwatch.detection.taxonomy import Taxonomy

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
# Model output often types typographic apostrophes; the patterns are written with the ASCII one.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


@dataclass(frozen=True)
class CueHits:
    """For n windows and k categories: whether any cue matched, and which cue ids."""

    hit: npt.NDArray[np.bool_]  # (n, k)
    ids: list[list[tuple[str, ...]]]


class CueMatcher:
    def __init__(self, taxonomy: Taxonomy) -> None:
        self._compiled = [
            [(cue.id, re.compile(cue.pattern, re.IGNORECASE)) for cue in cat.cues]
            for cat in taxonomy.categories.values()
        ]
        self._vetoes = [re.compile(cue.pattern, re.IGNORECASE) for cue in taxonomy.cue_vetoes]

    def match(self, texts: Sequence[str]) -> CueHits:
        n, k = len(texts), len(self._compiled)
        hit = np.zeros((n, k), dtype=bool)
        ids: list[list[tuple[str, ...]]] = [[() for _ in range(k)] for _ in range(n)]
        kept = [self._unvetoed(text) for text in texts]
        for c, cues in enumerate(self._compiled):
            if not cues:
                continue
            for i, sentences in enumerate(kept):
                found = tuple(cue_id for cue_id, regex in cues if any(regex.search(s) for s in sentences))
                if found:
                    hit[i, c] = True
                    ids[i][c] = found
        return CueHits(hit, ids)

    def _unvetoed(self, text: str) -> list[str]:
        """The window's sentences that no veto matches."""
        sentences = _SENTENCE_END.split(text.translate(_APOSTROPHES))
        return [s for s in sentences if s and not any(v.search(s) for v in self._vetoes)]
