"""DM 2.0 HGET delivery: published MO instances."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from bootstrap.store.models.types import UtcDateTime, utcnow

__all__ = ["DmObjectRow"]


class DmObjectRow(SQLModel, table=True):
    """An MO instance published for HGET delivery (DM-HLF-003), until data repositories fetched it.

    Ours (docs/dm2-exchange.md): a repository serves ``{repository URL}/dmboot/{ref}`` from
    our ``GET /dm/objects/{ref}``. Not secret (certificates, URLs), addressed by an
    unguessable ``ref``, kept until ``expires_at`` or the device's BootstrapComplete.
    """

    __tablename__ = "dm_object"

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(unique=True, index=True, max_length=64)
    dev_id: str = Field(max_length=128, index=True)
    client_uri: str = Field(max_length=512)
    cv: str = Field(max_length=128)
    #: The MO instance JSON array, as served.
    body: str
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
