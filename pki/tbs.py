"""Sign X.509 structures with any :class:`~pki.signers.Signer`.

cryptography's builders sign only with a private key they hold. For a key that
lives elsewhere (Vault Transit, PKCS#11) we let the builder produce the
to-be-signed structure by signing once with a throwaway key *of the same type*
- the signatureAlgorithm inside the TBS depends only on the key type and hash -
then sign the TBS bytes with the real signer and assemble the outer SEQUENCE
with asn1crypto (RFC 5280 section 4.1.1 for certificates, 5.1.1 for CRLs).

A :class:`~pki.signers.LocalSigner` takes the builder's own path: one signature,
the same bytes.
"""

from __future__ import annotations

import functools

from asn1crypto import core as asn1_core
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from pki.errors import SignerError
from pki.keys import KeyType, PrivateKey, generate_private_key, signature_hash
from pki.signers import LocalSigner, Signer

__all__ = ["check_signature", "sign_certificate", "sign_crl", "throwaway_key"]


@functools.cache
def throwaway_key(key_type: KeyType) -> PrivateKey:
    """A key of ``key_type`` made once per process, to draft TBS structures with."""
    # Any RSA size yields the same AlgorithmIdentifier (sha256WithRSAEncryption), so
    # the smallest allowed size serves every RSA signer.
    return generate_private_key(KeyType.RSA2048 if key_type.is_rsa else key_type)


def sign_certificate(builder: x509.CertificateBuilder, signer: Signer) -> x509.Certificate:
    """Sign ``builder`` with ``signer`` and return the certificate."""
    algorithm = signature_hash(signer.key_type)
    if isinstance(signer, LocalSigner):
        return builder.sign(signer.private_key, algorithm)
    draft = builder.sign(throwaway_key(signer.key_type), algorithm)
    der = _assemble(asn1_x509.Certificate, draft.public_bytes(Encoding.DER), "tbs_certificate", "signature_value",
                    _sign(signer, draft.tbs_certificate_bytes))
    return x509.load_der_x509_certificate(der)


def sign_crl(builder: x509.CertificateRevocationListBuilder, signer: Signer) -> x509.CertificateRevocationList:
    """Sign a CRL ``builder`` with ``signer`` and return the CRL."""
    algorithm = signature_hash(signer.key_type)
    if isinstance(signer, LocalSigner):
        return builder.sign(signer.private_key, algorithm)
    draft = builder.sign(throwaway_key(signer.key_type), algorithm)
    der = _assemble(asn1_crl.CertificateList, draft.public_bytes(Encoding.DER), "tbs_cert_list", "signature",
                    _sign(signer, draft.tbs_certlist_bytes))
    return x509.load_der_x509_crl(der)


def check_signature(certificate: x509.Certificate, issuer: x509.Certificate) -> None:
    """Verify ``certificate`` was signed by ``issuer``'s key; raise SignerError if not.

    A remote signer that signs with the wrong key version would otherwise hand out
    certificates nobody can verify.
    """
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise SignerError(f"signature does not verify with the issuer key: {exc}") from exc


def _sign(signer: Signer, tbs: bytes) -> bytes:
    signature = signer.sign(tbs)
    if not isinstance(signature, bytes) or not signature:
        raise SignerError(f"{signer!r} returned no signature")
    return signature


def _assemble(outer_type: type[asn1_core.Sequence], draft_der: bytes, tbs_field: str, signature_field: str,
              signature: bytes) -> bytes:
    """The draft's TBS and signatureAlgorithm with the real signature: a certificate or a CRL, DER."""
    outer = outer_type.load(draft_der)
    signed = outer_type({
        tbs_field: outer[tbs_field],
        "signature_algorithm": outer["signature_algorithm"],
        signature_field: asn1_core.OctetBitString(signature),
    })
    # No force=True: the TBS keeps the exact bytes that were signed (a re-encoding could
    # differ from them), and skipping the recursive re-encode saves ~4 ms per certificate.
    return bytes(signed.dump())
