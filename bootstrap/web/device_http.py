"""What the two device channels (DM 2.0 in :mod:`bootstrap.web.dm2`, DM 1.x in
:mod:`bootstrap.web.dm1`) share on HTTP: the DevID header, our token scheme, Accept matching.

Both import this module; :mod:`~bootstrap.web.dm2` hands a package 1 whose ``Accept``
asks for SyncML to :mod:`~bootstrap.web.dm1`, so the dependency runs one way.
"""

from __future__ import annotations

__all__ = ["DEVID_HEADER", "TOKEN_SCHEME", "accepts"]

#: DM 2.0: the request header that names the device in package 1.
DEVID_HEADER = "OMADM-DevID"
#: Ours: the Authorization scheme for a one-time enrollment token on /dm.
TOKEN_SCHEME = "DMBoot-Token"  # noqa: S105 - a scheme name, not a secret


def accepts(header: str | None, media_type: str) -> bool:
    """Whether an Accept-style header (RFC 9110 12.5.1) admits ``media_type``; no header admits all."""
    if header is None or not header.strip():
        return True
    major = media_type.partition("/")[0]
    for item in header.split(","):
        media_range, *params = (p.strip() for p in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and media_range.lower() in ("*/*", f"{major}/*", media_type):
            return True
    return False
