"""pki.tpm against real peers: swtpm (the TPM) and tpm2-tools (tpm2_makecredential --tcti none)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from pki.tpm import (
    ATTR_FIXED_PARENT,
    ATTR_FIXED_TPM,
    ATTR_RESTRICTED,
    ATTR_SENSITIVE_DATA_ORIGIN,
    ATTR_SIGN,
    TpmFormatError,
    TpmPublic,
    make_credential,
    parse_attest,
    parse_public,
    verify_signature,
)
from tests.support.tpm import MOVABLE_AK, SoftTpm


@pytest.mark.parametrize("algorithm", ["ecc", "rsa"])
def test_name_and_attributes_of_an_ak_match_tpm2_createak(tpm_device: SoftTpm, algorithm: str) -> None:
    ak = tpm_device.create_ak(tpm_device.create_ek(), algorithm)
    public = parse_public(ak.public)
    assert public.name == ak.name  # tpm2_createak -n: the TPM's own Name
    assert public.kind == algorithm
    assert public.has(ATTR_RESTRICTED | ATTR_SIGN | ATTR_FIXED_TPM | ATTR_FIXED_PARENT | ATTR_SENSITIVE_DATA_ORIGIN)


def test_a_movable_key_lacks_fixed_tpm(tpm_device: SoftTpm) -> None:
    key, _handle = tpm_device.create_key(MOVABLE_AK, "ecc256:ecdsa-sha256:null")
    public = parse_public(key.public)
    assert public.name == key.name
    assert public.has(ATTR_RESTRICTED | ATTR_SIGN) and not public.has(ATTR_FIXED_TPM)


@pytest.mark.parametrize(("ek_algorithm", "ak_algorithm"), [("rsa", "ecc"), ("ecc", "rsa")],
                         ids=["rsa-ek", "ecc-ek"])
def test_the_tpm_activates_our_credential(tpm_device: SoftTpm, ek_algorithm: str, ak_algorithm: str) -> None:
    ek = tpm_device.create_ek(ek_algorithm)
    ak = tpm_device.create_ak(ek, ak_algorithm)
    secret = secrets.token_bytes(32)
    credential = make_credential(parse_public(ek.public), ak.name, secret)
    assert tpm_device.activate(ak, ek, credential.tpm2_tools_file()) == secret


def test_the_tpm_refuses_a_credential_for_another_name(tpm_device: SoftTpm) -> None:
    ek = tpm_device.create_ek()
    ak = tpm_device.create_ak(ek)
    other = bytes.fromhex("000b") + hashlib.sha256(b"another object").digest()
    credential = make_credential(parse_public(ek.public), other, secrets.token_bytes(32))
    with pytest.raises(subprocess.CalledProcessError):
        tpm_device.activate(ak, ek, credential.tpm2_tools_file())


def _activate_in_software(key: rsa.RSAPrivateKey, name: bytes, blob: bytes, encrypted_secret: bytes) -> bytes:
    """TPM2_ActivateCredential for an RSA-2048 EK (nameAlg SHA-256, AES-128-CFB), from Part 1 §24 by hand."""
    def kdfa(k: bytes, label: bytes, context: bytes, bits: int) -> bytes:
        block = struct.pack(">I", 1) + label + b"\0" + context + struct.pack(">I", bits)
        return hmac.new(k, block, "sha256").digest()[:bits // 8]
    seed = key.decrypt(encrypted_secret[2:], padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(),
                                                          b"IDENTITY\0"))
    body = blob[2:]
    integrity, enc_identity = body[2:2 + 32], body[2 + 32:]
    assert hmac.compare_digest(integrity, hmac.new(kdfa(seed, b"INTEGRITY", b"", 256), enc_identity + name,
                                                   "sha256").digest())
    decryptor = Cipher(algorithms.AES(kdfa(seed, b"STORAGE", name, 128)), CFB(b"\0" * 16)).decryptor()
    plain = decryptor.update(enc_identity) + decryptor.finalize()
    return plain[2:2 + int.from_bytes(plain[:2], "big")]


def _split_tools_file(data: bytes) -> tuple[bytes, bytes]:
    assert data[:8] == bytes.fromhex("badcc0de00000001")
    size = int.from_bytes(data[8:10], "big")
    return data[8:10 + size], data[10 + size:]


def test_make_credential_matches_tpm2_makecredential(tmp_path: Path) -> None:
    """The software activation above opens tpm2_makecredential's blob, and ours: both follow the spec."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "ek.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    name = bytes.fromhex("000b") + hashlib.sha256(b"an AK's public area").digest()
    secret = secrets.token_bytes(32)
    (tmp_path / "secret").write_bytes(secret)
    subprocess.run(["tpm2_makecredential", "--tcti", "none", "-u", str(pem), "-G", "rsa", "-s",
                    str(tmp_path / "secret"), "-n", name.hex(), "-o", str(tmp_path / "cred")],
                   check=True, capture_output=True)
    peer_blob, peer_secret = _split_tools_file((tmp_path / "cred").read_bytes())
    assert _activate_in_software(key, name, peer_blob, peer_secret) == secret
    ek = TpmPublic(b"", "rsa", "sha256", ATTR_RESTRICTED | 1 << 17, (6, 128), key.public_key())
    ours = make_credential(ek, name, secret)
    assert len(ours.credential_blob) == len(peer_blob) and len(ours.encrypted_secret) == len(peer_secret)
    assert _activate_in_software(key, name, ours.credential_blob, ours.encrypted_secret) == secret


@pytest.mark.parametrize("algorithm", ["ecc", "rsa"])
def test_certify_names_the_key_and_verifies(tpm_device: SoftTpm, algorithm: str) -> None:
    ak = tpm_device.create_ak(tpm_device.create_ek(), algorithm)
    key, _handle = tpm_device.create_key()
    attest_bytes, signature = tpm_device.certify(key, ak)
    attest = parse_attest(attest_bytes)
    assert attest.name == key.name  # tpm2_load -n
    ak_public = parse_public(ak.public)
    assert verify_signature(ak_public, attest_bytes, signature)
    tampered = attest_bytes[:-1] + bytes([attest_bytes[-1] ^ 1])
    assert not verify_signature(ak_public, tampered, signature)


@pytest.mark.parametrize("data", [b"", b"\x00\x10" + b"\x00" * 4, b"\x00\x02\x00\x01"], ids=["empty", "short",
                                                                                               "truncated"])
def test_malformed_public_is_refused(data: bytes) -> None:
    with pytest.raises(TpmFormatError):
        parse_public(data)


def test_attest_needs_the_tpm_magic() -> None:
    with pytest.raises(TpmFormatError, match="magic"):
        parse_attest(b"\x00" * 64)
