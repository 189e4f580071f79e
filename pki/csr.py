"""PKCS#10 certification requests (RFC 2986): parse, verify, and check against a profile.

cryptography parses the request and verifies its signature; asn1crypto reads the
attributes cryptography does not model well - ``challengePassword`` (RFC 2985
5.4.1) and ``extensionRequest`` (RFC 2985 5.4.2) - so every extension a requester
asks for is seen, including ones cryptography would skip.

The requester never decides what is certified. :func:`check_request` compares what
the CSR asks for with what the profile allows and, when the caller knows who the
requester is, with that identity; the names it returns are the ones to certify.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from pki.errors import CsrEncodingError, CsrPolicyError, CsrSignatureError, KeyPolicyError
from pki.identity import dev_id_from_uri, device_uri
from pki.keys import KeyPolicy, KeyType, PublicKey
from pki.profiles import CertificateProfile, IPAddress, Names

__all__ = ["MAX_CSR_BYTES", "CsrInfo", "check_request", "parse_csr"]

#: Larger requests are refused before parsing; an RSA-4096 CSR with many SANs is ~2 KiB.
MAX_CSR_BYTES = 64 * 1024

# RFC 1123 host names, optionally with one leading wildcard label; internationalised
# names must arrive as A-labels (xn--...).
_HOSTNAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")

_SAN = "2.5.29.17"
_KEY_USAGE = "2.5.29.15"
_EXT_KEY_USAGE = "2.5.29.37"
_BASIC_CONSTRAINTS = "2.5.29.19"
# Extensions a request may carry; the profile decides their final values.
_TOLERATED = frozenset({_SAN, _KEY_USAGE, _EXT_KEY_USAGE, _BASIC_CONSTRAINTS})


@dataclass(frozen=True)
class CsrInfo:
    """A parsed, signature-verified request."""

    csr: x509.CertificateSigningRequest
    key_type: KeyType
    common_name: str | None
    dns: tuple[str, ...]
    ips: tuple[IPAddress, ...]
    uris: tuple[str, ...]
    #: extensionRequest as (dotted OID, asn1crypto value), in request order.
    requested_extensions: tuple[tuple[str, object], ...] = field(repr=False)
    challenge_password: str | None = field(repr=False)
    #: The request's public key, decoded once (every check and the certificate need it).
    public_key: PublicKey = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @property
    def extensions(self) -> tuple[str, ...]:
        """Dotted OIDs of the extensions in extensionRequest."""
        return tuple(oid for oid, _ in self.requested_extensions)

    def __post_init__(self) -> None:
        if self.public_key is None:
            object.__setattr__(self, "public_key", self.csr.public_key())

    def __repr__(self) -> str:  # never show the challenge password
        return f"CsrInfo(cn={self.common_name!r}, key_type={self.key_type.value}, dns={self.dns}, uris={self.uris})"


def parse_csr(data: bytes | str, key_policy: KeyPolicy | None = None) -> CsrInfo:
    """Parse a PEM or DER request, verify its signature, and apply ``key_policy``.

    Raises:
        CsrEncodingError: not a PKCS#10 request, or larger than MAX_CSR_BYTES.
        CsrSignatureError: the signature does not verify.
        KeyPolicyError: the key is weak or of a refused type.
        CsrPolicyError: an extension cannot be read.
    """
    raw = data.encode() if isinstance(data, str) else data
    if not isinstance(raw, bytes):
        raise TypeError("CSR must be bytes or str")
    if len(raw) > MAX_CSR_BYTES:
        raise CsrEncodingError(f"CSR is {len(raw)} bytes; the limit is {MAX_CSR_BYTES}", field="csr")
    csr = _load(raw)
    public_key = _public_key(csr)
    if not _signature_valid(csr):
        raise CsrSignatureError("CSR signature does not verify with its public key", field="csr")
    key_type = (key_policy or KeyPolicy()).check(public_key)
    # Most device CSRs carry no attributes: skip the second (asn1crypto) parse then.
    extensions, challenge = _attributes(csr.public_bytes(Encoding.DER)) if _has_attributes(csr) else ([], None)
    dns, ips, uris = _requested_names(extensions)
    return CsrInfo(
        csr=csr,
        key_type=key_type,
        common_name=_common_name(csr),
        dns=dns,
        ips=ips,
        uris=uris,
        requested_extensions=tuple(extensions),
        challenge_password=challenge,
        public_key=public_key,
    )


def _load(raw: bytes) -> x509.CertificateSigningRequest:
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            if raw.count(b"-----BEGIN") > 1:
                # cryptography would read the first and ignore the rest: refuse, do not guess.
                raise CsrEncodingError("the PEM holds more than one block; send exactly one CERTIFICATE REQUEST",
                                       field="csr")
            return x509.load_pem_x509_csr(raw)
        return x509.load_der_x509_csr(raw)
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        raise CsrEncodingError(f"not a PKCS#10 certification request: {exc}", field="csr") from None


def _public_key(csr: x509.CertificateSigningRequest) -> PublicKey:
    # cryptography decodes the key lazily: a corrupt or unknown key surfaces only here.
    try:
        return csr.public_key()
    except UnsupportedAlgorithm as exc:
        raise KeyPolicyError(f"CSR key type is not supported: {exc}", field="csr") from None
    except ValueError as exc:
        raise CsrEncodingError(f"CSR public key cannot be read: {exc}", field="csr") from None


def _signature_valid(csr: x509.CertificateSigningRequest) -> bool:
    try:
        return csr.is_signature_valid
    except UnsupportedAlgorithm as exc:
        raise CsrSignatureError(f"CSR signature algorithm is not supported: {exc}", field="csr") from None
    except ValueError as exc:
        raise CsrSignatureError(f"CSR signature cannot be checked: {exc}", field="csr") from None


def _has_attributes(csr: x509.CertificateSigningRequest) -> bool:
    try:
        return len(list(csr.attributes)) > 0
    except ValueError:  # an attribute cryptography cannot parse: let asn1crypto say what
        return True


def _attributes(der: bytes) -> tuple[list[tuple[str, object]], str | None]:
    """(extensionRequest as [(oid, parsed value)], challengePassword) read with asn1crypto."""
    try:
        info = asn1_csr.CertificationRequest.load(der)["certification_request_info"]
        extensions: list[tuple[str, object]] = []
        challenge: str | None = None
        for attribute in info["attributes"]:
            kind = attribute["type"].dotted
            if kind == "1.2.840.113549.1.9.14":  # extensionRequest
                for ext_set in attribute["values"]:
                    extensions += [(e["extn_id"].dotted, e["extn_value"].parsed) for e in ext_set]
            elif kind == "1.2.840.113549.1.9.7":  # challengePassword
                challenge = str(attribute["values"][0].native)
        for oid, value in extensions:
            # asn1crypto parses lazily: decode what check_request reads now, so a malformed
            # value is refused here and not as a bare ValueError later.
            if oid in _TOLERATED:
                _ = value.native  # type: ignore[attr-defined]
        return extensions, challenge
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise CsrPolicyError(f"CSR attributes cannot be read: {exc}", field="csr") from None


def _requested_names(
    extensions: list[tuple[str, object]],
) -> tuple[tuple[str, ...], tuple[IPAddress, ...], tuple[str, ...]]:
    dns: list[str] = []
    ips: list[IPAddress] = []
    uris: list[str] = []
    for oid, value in extensions:
        if oid != _SAN:
            continue
        for general_name in value:  # type: ignore[attr-defined]
            kind, native = general_name.name, general_name.native
            if kind == "dns_name":
                dns.append(str(native).lower())
            elif kind == "ip_address":
                try:
                    ips.append(ipaddress.ip_address(str(native)))
                except ValueError:  # an address with a netmask (8 or 32 octets)
                    raise CsrPolicyError(
                        f"subjectAltName IP address {native!r} is not a single address", field="csr"
                    ) from None
            elif kind == "uniform_resource_identifier":
                # As sent: asn1crypto's .native is an IRI (percent-decoded, case-folded), which
                # would never equal device_uri() for a DevID with '/', '%', '?' or '#'.
                uris.append(_ascii(general_name.chosen.contents))
            else:
                raise CsrPolicyError(f"subjectAltName of type {kind} is not allowed", field="csr")
    return tuple(dns), tuple(ips), tuple(uris)


def _ascii(contents: bytes) -> str:
    try:
        return bytes(contents).decode("ascii")
    except UnicodeDecodeError:
        raise CsrPolicyError("subjectAltName URI is not ASCII", field="csr") from None


def _common_name(csr: x509.CertificateSigningRequest) -> str | None:
    values = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def check_request(info: CsrInfo, profile: CertificateProfile, expected: Names | None = None) -> Names:
    """Check ``info`` against ``profile`` and return the names to certify.

    With ``expected`` (an identity the caller authenticated), the request may ask
    for that identity or a part of it, nothing more, and ``expected`` is certified.
    Without it (an admin issuing from a file), the request's own names are
    certified, within what the profile allows.

    Raises:
        CsrPolicyError: a forbidden extension, SAN kind, CA flag, or a name outside ``expected``.
        KeyPolicyError: the profile refuses the key type.
    """
    profile.key_policy.check(info.public_key)
    _check_extensions(info, profile)
    _check_san_kinds(info, profile)
    if expected is not None:
        _check_within(info, expected)
        return expected
    return _names_from_request(info, profile)


def _check_extensions(info: CsrInfo, profile: CertificateProfile) -> None:
    extensions = dict(info.requested_extensions)
    for oid in info.extensions:
        if oid not in _TOLERATED:
            raise CsrPolicyError(f"extension {oid} is not allowed by profile {profile.name}", field="csr")
    constraints = extensions.get(_BASIC_CONSTRAINTS)
    if constraints is not None and constraints["ca"].native:  # type: ignore[index]
        raise CsrPolicyError("CSR requests a CA certificate (basicConstraints cA=TRUE)", field="csr")
    eku = extensions.get(_EXT_KEY_USAGE)
    if eku is not None:
        asked = {x509.ObjectIdentifier(p.dotted) for p in eku}  # type: ignore[attr-defined]
        if not asked <= profile.eku:
            raise CsrPolicyError(f"extended key usage not allowed by profile {profile.name}", field="csr")


def _check_san_kinds(info: CsrInfo, profile: CertificateProfile) -> None:
    for kind, values in (("dns", info.dns), ("ip", info.ips), ("uri", info.uris)):
        if values and kind not in profile.san_kinds:
            raise CsrPolicyError(f"subjectAltName of kind {kind} is not allowed by profile {profile.name}", field="csr")


def _check_within(info: CsrInfo, expected: Names) -> None:
    if info.common_name is not None and info.common_name != expected.common_name:
        raise CsrPolicyError(
            f"CSR subject CN {info.common_name!r} does not match {expected.common_name!r}", field="csr"
        )
    extra = (
        set(info.dns) - set(expected.dns)
        | {str(ip) for ip in set(info.ips) - set(expected.ips)}
        | set(info.uris) - set(expected.uris)
    )
    if extra:
        raise CsrPolicyError(f"CSR asks for names it may not have: {', '.join(sorted(extra))}", field="csr")


def _names_from_request(info: CsrInfo, profile: CertificateProfile) -> Names:
    if "uri" in profile.san_kinds:  # device-like: the CN is the DevID
        if not info.common_name:
            raise CsrPolicyError("CSR subject needs a CN holding the DevID", field="csr")
        try:
            uri = device_uri(info.common_name)
        except ValueError as exc:
            raise CsrPolicyError(f"CSR subject CN: {exc}", field="csr") from None
        foreign = [u for u in info.uris if u != uri or dev_id_from_uri(u) is None]
        if foreign:
            raise CsrPolicyError(f"CSR asks for URIs it may not have: {', '.join(foreign)}", field="csr")
        return Names(common_name=info.common_name, uris=(uri,))
    if "dns" in profile.san_kinds:
        dns = info.dns or ((info.common_name.lower(),) if info.common_name else ())
        if not dns and not info.ips:
            raise CsrPolicyError(f"profile {profile.name} needs a DNS name or IP address", field="csr")
        bad = [d for d in dns if not _HOSTNAME.match(d)]
        if bad:
            raise CsrPolicyError(f"not a DNS host name (use IDNA A-labels): {', '.join(bad)}", field="csr")
        return Names(common_name=info.common_name or (dns[0] if dns else str(info.ips[0])), dns=dns, ips=info.ips)
    if not info.common_name:
        raise CsrPolicyError("CSR subject needs a CN", field="csr")
    return Names(common_name=info.common_name)
