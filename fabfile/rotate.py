"""Certificate rotation without a window of distrust (phases recorded locally; resumable).

Placeholder for the rotation issue: only the part other steps need today.
"""

from __future__ import annotations

import json

from .localfs import read_optional


def pending_anchor(session) -> bytes | None:
    """The second anchor clients must trust while a rotation is in progress, else None."""
    data = read_optional(session.inv.state_dir / "rotation.json")
    if not data:
        return None
    extra = json.loads(data).get("extra_anchor_pem")
    return extra.encode() if extra else None
