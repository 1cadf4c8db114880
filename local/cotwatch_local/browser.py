"""Headless Chromium (Debian's ``chromium`` package) for the report: the DOM after scripts ran, and a screenshot.

Flags: no sandbox (root in CI), no GPU, and nothing that phones home (background networking, component
updates, sync, first-run); a fresh profile per call. ``--virtual-time-budget`` lets plotly finish drawing
before the DOM is dumped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
)
_CHART = re.compile(r'<div class="chart" data-chart="([a-z-]+)" data-points="(\d+)"')


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("chromium is not installed: `make setup` installs Debian's chromium package")
    return found


def _run(page: Path, *extra: str, timeout_s: float = 120) -> str:
    with tempfile.TemporaryDirectory(prefix="cotwatch-chromium-") as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(page: Path) -> str:
    return _run(page, "--dump-dom")


def screenshot(page: Path, out: Path, width: int = 1100, height: int = 1400) -> Path:
    _run(page, f"--screenshot={out.resolve()}", f"--window-size={width},{height}")
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {out}")
    return out


def drawn_points(dom: str) -> dict[str, tuple[int, int]]:
    """Per chart: (points it was given, SVG points plotly drew: markers and bars have class ``point``)."""
    pieces = _CHART.split(dom)
    # split keeps the two groups: [before, name, given, body, name, given, body, ...]
    return {pieces[i]: (int(pieces[i + 1]), pieces[i + 2].count('class="point"')) for i in range(1, len(pieces) - 2, 3)}
