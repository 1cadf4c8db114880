"""flush_digests: every minute, the digest of each cooldown window that ended with alerts held back.

Wiring only: the use case is ``cotwatch.cooldown.FlushDigests``, the handler ``cotwatch.handlers.flush_digests``.
"""

from __future__ import annotations

from cotwatch.config import DigestFlushSettings
from cotwatch.wiring_notify import build_digest_flush

lambda_handler = build_digest_flush(DigestFlushSettings())
