"""Errors raised by the service layers (store, secrets, auth, services).

Together with :mod:`pki.errors` they form the one hierarchy the web layer maps
to RFC 9457 problem responses (``bootstrap.web.problems``) and the CLI maps to
one line and a non-zero exit. None of them carries an HTTP status::

    Exception
    +-- pki.errors.PkiError            (see pki/errors.py: key, CSR, profile, signer)
    +-- DmBootstrapError
        +-- ConfigurationError          settings missing or invalid
        +-- NotInitialized              `dmboot init` has not been run
        +-- NotFound                    a named object does not exist
        +-- Conflict                    the object exists, or changed under us
        +-- InvalidRequest              input that is well-formed but unacceptable
        |   +-- UnsupportedMediaType    a body in a format the endpoint does not take
        |   +-- NotAcceptable           no response format the client accepts
        |   +-- PayloadTooLarge         a body over the configured limit
        +-- AuthenticationFailed        the caller could not be authenticated
        |   +-- TooManyAttempts         too many failures for that name; retry later
        +-- PermissionDenied            the caller may not do this
        |   +-- QuotaExceeded           a factory station's device quota is used up
        +-- SecretStoreError            the secret store failed
            +-- SecretNotFound          no secret or key at that path
            +-- SecretConflict          check-and-set lost: someone wrote first
            +-- SecretAccessDenied      the store refused our credentials/policy
            +-- SecretStoreUnavailable  sealed, stopped or unreachable; retry later
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "ConfigurationError",
    "Conflict",
    "DmBootstrapError",
    "InvalidRequest",
    "NotAcceptable",
    "NotFound",
    "NotInitialized",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "SecretAccessDenied",
    "SecretConflict",
    "SecretNotFound",
    "SecretStoreError",
    "SecretStoreUnavailable",
    "TooManyAttempts",
    "UnsupportedMediaType",
]


class DmBootstrapError(Exception):
    """Root of the service's own errors."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The input field the error is about, when there is one.
        self.field = field


class ConfigurationError(DmBootstrapError):
    """Settings are missing or invalid."""


class NotInitialized(DmBootstrapError):
    """The data directory or CA hierarchy does not exist yet; run `dmboot init`."""


class NotFound(DmBootstrapError):
    """A named object does not exist."""


class Conflict(DmBootstrapError):
    """The object already exists, or changed under us."""


class InvalidRequest(DmBootstrapError):
    """Input that is well-formed but cannot be accepted."""


class UnsupportedMediaType(InvalidRequest):
    """A request body in a media type the endpoint does not accept."""


class NotAcceptable(InvalidRequest):
    """The client accepts none of the formats the endpoint can answer in."""


class PayloadTooLarge(InvalidRequest):
    """A request body over the configured size limit."""


class AuthenticationFailed(DmBootstrapError):
    """The caller could not be authenticated."""


class TooManyAttempts(AuthenticationFailed):
    """Too many failed attempts for one login name or DevID; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        #: Seconds until the next attempt is considered.
        self.retry_after = retry_after


class PermissionDenied(DmBootstrapError):
    """The authenticated caller may not do this."""


class QuotaExceeded(PermissionDenied):
    """A factory station's device quota does not cover the devices it asked for; nothing was issued."""


class SecretStoreError(DmBootstrapError):
    """The secret store failed."""


class SecretNotFound(SecretStoreError):
    """No secret or key exists at that path."""


class SecretConflict(SecretStoreError):
    """A check-and-set write lost: another writer changed the secret first."""


class SecretAccessDenied(SecretStoreError):
    """The secret store refused our credentials or policy."""


class SecretStoreUnavailable(SecretStoreError):
    """The secret store is sealed, stopped or unreachable; the caller may retry."""

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        #: Seconds after which a retry may succeed.
        self.retry_after = retry_after
