"""SIP digest passwords for the phones: from the plan when it gives them, else made per run.

The passwords are secrets of one run: written into the run folder (and the PBX's password
file, mode 0600) and passed to the agents, never printed in a report or a log line.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping

# Printable, no space, quote, backslash or `$` (kamailio strings and baresip account lines).
PASSWORD_RE = re.compile(r"^[A-Za-z0-9._~+=!#%&*,:;?@^-]{8,64}$")
GENERATED_BYTES = 18  # 144 random bits -> 24 URL-safe characters


def check_password(ext: str, password: str) -> None:
    """ValueError (one line, without the password) if it is unusable."""
    if not PASSWORD_RE.match(password):
        raise ValueError(f"password of {ext}: 8..64 characters from A-Z a-z 0-9 and "
                         "._~+=!#%&*,:;?@^- (no space, quote, backslash or $)")


def _derived(ext: str, seed: str) -> str:
    """A reproducible password for tests: HMAC-SHA256(seed, ext), URL-safe."""
    digest = hmac.new(seed.encode(), ext.encode(), hashlib.sha256).hexdigest()
    return digest[:24]


def make_credentials(extensions: Iterable[str], seed: str | None = None,
                     given: Mapping[str, str] | None = None) -> dict[str, str]:
    """One password per extension: `given` (from the plan) wins; otherwise a random one
    (secrets, 144 bits) or, with `seed`, one derived from it (reproducible)."""
    given = given or {}
    out: dict[str, str] = {}
    for ext in extensions:
        if ext in given:
            check_password(ext, given[ext])
            out[ext] = given[ext]
        elif seed is not None:
            out[ext] = _derived(ext, seed)
        else:
            out[ext] = secrets.token_urlsafe(GENERATED_BYTES)
    return out
