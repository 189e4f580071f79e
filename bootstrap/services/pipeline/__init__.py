"""The issuance pipeline: authorizers, one sign-and-record path, group commit.

See :mod:`bootstrap.services.pipeline.issue` (the path),
:mod:`bootstrap.services.pipeline.authorizers` (who may ask for what),
:mod:`bootstrap.services.pipeline.group_commit` (shared transactions) and
:mod:`bootstrap.services.pipeline.supersede` (re-enrollment).
"""

from __future__ import annotations

from bootstrap.services.pipeline.authorizers import (
    DeviceAuthorizer,
    DeviceGrant,
    admin_options,
    check_certificate_current,
    device_actor,
    valid_dev_id,
)
from bootstrap.services.pipeline.group_commit import GroupCommitter
from bootstrap.services.pipeline.issue import Issued, Pipeline, certificate_values, leaf_profile, sign
from bootstrap.services.pipeline.options import Authorize, SignOptions

__all__ = [
    "Authorize",
    "DeviceAuthorizer",
    "DeviceGrant",
    "GroupCommitter",
    "Issued",
    "Pipeline",
    "SignOptions",
    "admin_options",
    "certificate_values",
    "check_certificate_current",
    "device_actor",
    "leaf_profile",
    "sign",
    "valid_dev_id",
]
