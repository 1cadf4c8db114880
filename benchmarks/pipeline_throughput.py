"""Kept for old links: the benchmark is ``cotwatch bench`` (local/cotwatch_local/bench.py, docs/performance.md).

.venv/bin/python benchmarks/pipeline_throughput.py [cotwatch bench options, e.g. --json --no-latency]
"""

from __future__ import annotations

import sys

from cotwatch_local.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
