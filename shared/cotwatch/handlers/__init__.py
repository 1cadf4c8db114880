"""The Lambda handlers, each built by ``make_handler(use_case)``: ``functions/<name>/app.py`` wires the real
use case once per container; tests pass one over in-memory adapters."""
