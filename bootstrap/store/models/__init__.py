"""Database tables (sqlmodel), one module per domain. The database holds references and hashes, never secrets.

Changing a table means a new Alembic revision in ``bootstrap/store/migrations``.
Every datetime column is a :class:`UtcDateTime`: aware UTC in, aware UTC out.
"""

from __future__ import annotations

from bootstrap.store.models.audit import AuditEvent, AuditHead
from bootstrap.store.models.dm import DmObjectRow
from bootstrap.store.models.enrollment import (
    DataRepositoryRow,
    DeviceRow,
    DmServerRow,
    EnrollmentProfileRow,
    EnrollmentTokenRow,
    ManufacturerCaRow,
    ProfileDataRepositoryRow,
    ProfileDmServerRow,
    UsedNonceRow,
)
from bootstrap.store.models.factory import FactoryBatchRow, FactoryItemRow, FactoryStationRow
from bootstrap.store.models.pki import (
    AuthorityRow,
    CertificateRow,
    CrlRow,
    OcspResponseRow,
    OcspSignerRow,
    RevokedRow,
)
from bootstrap.store.models.principals import AdminRow, ApiTokenRow, ConsoleSessionRow, LoginThrottleRow
from bootstrap.store.models.tpm import TpmDeviceRow, TpmManufacturerCaRow
from bootstrap.store.models.types import UtcDateTime, row_id, utcnow

__all__ = [
    "AdminRow",
    "ApiTokenRow",
    "AuditEvent",
    "AuditHead",
    "AuthorityRow",
    "CertificateRow",
    "ConsoleSessionRow",
    "CrlRow",
    "DataRepositoryRow",
    "DeviceRow",
    "DmObjectRow",
    "DmServerRow",
    "EnrollmentProfileRow",
    "EnrollmentTokenRow",
    "FactoryBatchRow",
    "FactoryItemRow",
    "FactoryStationRow",
    "LoginThrottleRow",
    "ManufacturerCaRow",
    "OcspResponseRow",
    "OcspSignerRow",
    "ProfileDataRepositoryRow",
    "ProfileDmServerRow",
    "RevokedRow",
    "TpmDeviceRow",
    "TpmManufacturerCaRow",
    "UsedNonceRow",
    "UtcDateTime",
    "row_id",
    "utcnow",
]
