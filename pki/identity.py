"""How a device's identity appears in its certificate - our own convention.

OMA DM identifies a device by ``DevInfo/DevID`` (for example ``IMEI:493005100592800``).
The certificate carries it twice: as the subject commonName, and as a URI
subjectAltName ``urn:dmboot:devid:<DevID, percent-encoded>``. The URN form is
dm-bootstrap's own definition (documented in docs/wire-format.md); it is defined
here and nowhere else.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

__all__ = ["DEVICE_URI_PREFIX", "check_dev_id", "dev_id_from_uri", "device_uri"]

DEVICE_URI_PREFIX = "urn:dmboot:devid:"

# DevID is free text in DM; we accept printable ASCII without spaces or controls, so it
# survives DNs, URIs, file names (factory output) and log lines unchanged.
_DEV_ID = re.compile(r"^[\x21-\x7e]{1,128}\Z")


def check_dev_id(dev_id: str) -> str:
    """Return ``dev_id`` if it is acceptable, else raise ValueError naming the rule."""
    if not isinstance(dev_id, str):
        raise TypeError("DevID must be a string")
    if not _DEV_ID.match(dev_id):
        raise ValueError("DevID must be 1-128 printable ASCII characters without spaces")
    return dev_id


def device_uri(dev_id: str) -> str:
    """The URI subjectAltName for ``dev_id``."""
    return DEVICE_URI_PREFIX + quote(check_dev_id(dev_id), safe=":@-._~!$&'()*+,;=")


def dev_id_from_uri(uri: str) -> str | None:
    """The DevID in a device URI SAN, or None if ``uri`` is not one."""
    if not uri.startswith(DEVICE_URI_PREFIX):
        return None
    return unquote(uri[len(DEVICE_URI_PREFIX) :])
