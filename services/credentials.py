"""SIP digest passwords for the phones: from the plan when it gives them, else made per run.

The passwords are secrets of one run: written into the run folder (and the PBX's password
file, mode 0600) and passed to the agents, never printed in a report or a log line.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

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
            out[ext] = "p" + secrets.token_urlsafe(GENERATED_BYTES)
    return out


def write_credentials(path: Path, credentials: Mapping[str, str]) -> None:
    """{ext: password} as JSON, readable by its owner only (0600 from creation on)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(dict(sorted(credentials.items())), fh, indent=2)
        fh.write("\n")


def read_credentials(path: Path) -> dict[str, str]:
    """What write_credentials wrote (ValueError, without any password, if malformed)."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{path}: not JSON") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: not a map of extension -> password")
    for ext, password in data.items():
        check_password(ext, password)
    return data
