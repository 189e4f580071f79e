"""DM 1.x bootstrap: an enrollment profile's account as DMAcc 1.0, per-device DM 1.x credentials.

Devices that speak only OMA DM 1.2/1.3 get the same account the DM 2.0 bootstrap
gives (the profile's DM server, its name) as a ``./DMAcc/<x>`` subtree in a
SyncML DM 1.2 message, WBXML or XML, with the bootstrap MAC in the Content-Type
(``SEC=...; MAC=...``). docs/dm1x.md describes the whole of it; in short:

- Credentials: :func:`~bootstrap.dm.dm1_security.generate_dm1_credentials` per
  device and DM server, plus the user PIN, live in the secret store at
  :func:`credentials_path` (``dm1/<DevID, escaped>``), written with ``cas=0``:
  the first bootstrap creates them, every later one returns the same until
  :meth:`Dm1Service.rotate` (or a change of the device's DM server) replaces them.
  The database holds only the reference (in the audit trail), never a secret.
- Profile settings, in ``EnrollmentProfileRow.dmacc`` (:func:`profile_options`):
  ``dm1_auth`` ``DIGEST`` (syncml:auth-md5, default) or ``HMAC`` (syncml:auth-MAC)
  for AAuthPref and both AppAuth entries; ``dm1_sec`` ``USERPIN`` (default),
  ``NETWORKID`` or ``USERPIN_NETWORKID``; ``dm1_account`` the ``<x>`` node name
  (default: the DM server's id).
- IMSI and PIN, the MAC keys: the IMSI comes with the request (or the factory
  manifest); the PIN is the device's, kept with its credentials - generated
  (8 digits) unless the factory manifest seeds it at first use.
- Attestation: :meth:`Dm1Service.bootstrap` runs the issuance pipeline with the
  device authorizer every channel uses (bootstrap.services.pipeline) and issues a
  certificate only when a CSR is given. A one-time token is
  consumed either way, and the device is recorded as enrolled, all in one
  transaction with the DDF check of the account: a refusal leaves nothing behind.
"""

from __future__ import annotations

from bootstrap.services.dm1._account import (
    AUTH_SCHEMES,
    DMACC_1_0,
    Dm1AccountError,
    Dm1CredentialsView,
    Dm1Message,
    Dm1Options,
    Dm1Package,
    credentials_path,
    dm1_account,
    profile_options,
)
from bootstrap.services.dm1._service import Dm1Service

__all__ = [
    "AUTH_SCHEMES",
    "DMACC_1_0",
    "Dm1AccountError",
    "Dm1CredentialsView",
    "Dm1Message",
    "Dm1Options",
    "Dm1Package",
    "Dm1Service",
    "credentials_path",
    "dm1_account",
    "profile_options",
]
