"""Errors raised by the :mod:`pki` library.

Every error the library raises derives from :class:`PkiError`; none of them
knows anything of HTTP. The service maps them to problem responses once, by
class ancestry::

    PkiError
    +-- KeyPolicyError         a key type or size the policy refuses
    +-- CsrError               a PKCS#10 request that cannot be accepted
    |   +-- CsrEncodingError   not PEM/DER PKCS#10, or too large
    |   +-- CsrSignatureError  the request's self-signature does not verify
    |   +-- CsrPolicyError     subject, SANs or extensions the profile forbids
    +-- ProfileError           an unknown profile, or input a profile cannot take
    +-- IssuanceError          the authority cannot issue (expired CA, ...)
    +-- SignerError            a signer failed to sign (backend down, ...)
    |   +-- SignerUnavailable  the signer is temporarily unreachable; retry later
    +-- EncodingError          PEM/DER/PKCS#7/PKCS#12/OCSP input that cannot be decoded
    |   +-- OcspRequestError   an OCSP request the responder answers with malformedRequest
    +-- PathError              no valid certification path to a trust anchor (paths.py)
"""

from __future__ import annotations

__all__ = [
    "CsrEncodingError",
    "CsrError",
    "CsrPolicyError",
    "CsrSignatureError",
    "EncodingError",
    "IssuanceError",
    "KeyPolicyError",
    "OcspRequestError",
    "PathError",
    "PkiError",
    "ProfileError",
    "SignerError",
    "SignerUnavailable",
]


class PkiError(Exception):
    """Root of every error raised by the pki library."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The input field the error is about, when there is one.
        self.field = field


class KeyPolicyError(PkiError):
    """A key type or size the key policy refuses."""


class CsrError(PkiError):
    """A PKCS#10 certification request that cannot be accepted."""


class CsrEncodingError(CsrError):
    """The request is not a PEM or DER PKCS#10 structure, or is too large."""


class CsrSignatureError(CsrError):
    """The request's signature does not verify with its own public key."""


class CsrPolicyError(CsrError):
    """The request asks for a subject, name or extension the profile forbids."""


class ProfileError(PkiError):
    """An unknown certificate profile, or input the profile cannot take."""


class IssuanceError(PkiError):
    """The authority cannot issue the certificate."""


class SignerError(PkiError):
    """A signer failed to produce a signature."""


class SignerUnavailable(SignerError):
    """The signer's backend is temporarily unreachable; the caller may retry."""

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        #: Seconds after which a retry may succeed.
        self.retry_after = retry_after


class EncodingError(PkiError):
    """Input in a PKI encoding (PEM, DER, PKCS#7, PKCS#12, OCSP) that cannot be decoded."""


class OcspRequestError(EncodingError):
    """An OCSP request that cannot be answered: the responder replies malformedRequest (RFC 6960 2.3)."""


class PathError(PkiError):
    """No valid certification path from a certificate to a trust anchor; the message says why."""
