"""A real software TPM for tests: swtpm as a socket TPM, driven by tpm2-tools and tpm2-openssl.

:class:`TpmMaker` is a TPM manufacturer: swtpm's local CA (``swtpm_localca``), with
its state in a folder of its own, signs the EK certificates ``swtpm_setup
--create-ek-cert`` puts into the TPMs it provisions. :class:`SoftTpm` is one
provisioned TPM behind ``swtpm socket``; its methods run the commands a device
maker runs (docs/tpm.md).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from asn1crypto import csr as asn1csr
from asn1crypto import pem
from cryptography import x509

__all__ = ["SoftTpm", "TpmCommandFailed", "TpmKey", "TpmMaker", "resource_manager", "tpm_maker", "tpm_device"]

#: A restricted signing key that may leave the TPM (fixedTPM and fixedParent clear): not an AK.
MOVABLE_AK = "sensitivedataorigin|userwithauth|restricted|sign"
#: A TLS client key that never leaves the TPM.
RESIDENT_KEY = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign"


def _free_ports() -> int:
    """A free port whose successor is free too (the swtpm TCTI finds the control port at port + 1)."""
    while True:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port < 65535 and second.connect_ex(("127.0.0.1", port + 1)) != 0:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port


class TpmCommandFailed(subprocess.CalledProcessError):
    """A TPM command failed; its message carries the tool's error output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


class TpmMaker:
    """A TPM manufacturer: swtpm's local CA in ``folder``, created by its first TPM."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        ca = folder / "ca"
        ca.mkdir(parents=True, exist_ok=True)
        (folder / "swtpm-localca.conf").write_text(
            f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\n"
            f"certserial = {ca}/certserial\n")
        (folder / "swtpm-localca.options").write_text(
            "--platform-manufacturer Example\n--platform-version 2.1\n--platform-model TestTPM\n")
        self.config = folder / "swtpm_setup.conf"
        self.config.write_text(
            f"create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {folder}/swtpm-localca.conf\n"
            f"create_certs_tool_options = {folder}/swtpm-localca.options\nactive_pcr_banks = sha256\n")

    def provision(self, state: Path) -> None:
        """Manufacture a TPM in ``state``: EKs, their certificates in NV (the maker's CA signs them)."""
        state.mkdir(parents=True, exist_ok=True)
        subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--create-ek-cert",
                        "--create-platform-cert", "--config", str(self.config), "--overwrite"],
                       check=True, capture_output=True)

    @property
    def root(self) -> x509.Certificate:
        """The maker's root CA certificate."""
        return x509.load_pem_x509_certificate((self.folder / "ca" / "swtpm-localca-rootca-cert.pem").read_bytes())

    @property
    def intermediate(self) -> x509.Certificate:
        """The maker's issuing CA certificate (signs EK certificates; signed by the root)."""
        return x509.load_pem_x509_certificate((self.folder / "ca" / "issuercert.pem").read_bytes())


class TpmKey:
    """A key in the TPM: its context file, TPM2B_PUBLIC and Name."""

    def __init__(self, context: Path, public: Path, name: Path) -> None:
        self.context, self.public_file, self.name_file = context, public, name

    @property
    def public(self) -> bytes:
        return self.public_file.read_bytes()

    @property
    def name(self) -> bytes:
        return self.name_file.read_bytes()


class SoftTpm:
    """One TPM: ``swtpm socket`` on two free ports, a work folder for tpm2-tools' files."""

    def __init__(self, folder: Path, maker: TpmMaker) -> None:
        self.folder = folder
        self.state = folder / "state"
        maker.provision(self.state)
        self.port = _free_ports()
        self.ctrl_port = self.port + 1
        self._process = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={self.ctrl_port},bindaddr=127.0.0.1", "--tpmstate", f"dir={self.state}",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.tcti = f"swtpm:host=127.0.0.1,port={self.port}"
        self._wait_ready()
        self._handles = iter(range(0x81000010, 0x81000100))

    def _wait_ready(self) -> None:
        for _ in range(500):  # swtpm needs a moment to listen; it is not a time limit on the test
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self._process.poll() is not None:
                raise RuntimeError("swtpm exited")
            time.sleep(0.01)
        raise RuntimeError("swtpm does not listen")

    def close(self) -> None:
        self._process.terminate()
        self._process.wait()

    def run(self, *argv: str) -> str:
        """Run a tpm2-tools command (or openssl with the tpm2 provider) against this TPM."""
        env = {**os.environ, "TPM2TOOLS_TCTI": self.tcti, "TPM2OPENSSL_TCTI": self.tcti}
        result = subprocess.run(list(argv), cwd=self.folder, env=env, capture_output=True, text=True, check=False)
        if argv[0].startswith("tpm2_") and argv[0] != "tpm2_flushcontext":
            # swtpm has three transient slots; tools leave objects loaded.
            subprocess.run(["tpm2_flushcontext", "-t"], env=env, capture_output=True, check=False)
        if result.returncode != 0:
            raise TpmCommandFailed(result.returncode, argv, result.stdout, result.stderr)
        return result.stdout

    def _file(self, stem: str) -> Path:
        return self.folder / f"{stem}-{secrets.token_hex(3)}"

    def ek_certificate(self, handle: str = "0x1c00002") -> bytes:
        """The EK certificate (DER) the maker stored in NV (RSA 2048 EK: 0x1c00002)."""
        out = self._file("ekcert")
        self.run("tpm2_nvread", handle, "-o", str(out))
        return out.read_bytes()

    def create_ek(self, algorithm: str = "rsa") -> TpmKey:
        """``tpm2_createek``: the EK from the default template (its public matches the EK certificate)."""
        ctx, pub = self._file("ek.ctx"), self._file("ek.pub")
        self.run("tpm2_createek", "-c", str(ctx), "-G", algorithm, "-u", str(pub))
        return TpmKey(ctx, pub, pub)

    def create_ak(self, ek: TpmKey, algorithm: str = "ecc") -> TpmKey:
        """``tpm2_createak`` under the EK: restricted signing, fixedTPM, fixedParent."""
        ctx, pub, name, priv = (self._file(s) for s in ("ak.ctx", "ak.pub", "ak.name", "ak.priv"))
        scheme = "ecdsa" if algorithm == "ecc" else "rsassa"
        self.run("tpm2_createak", "-C", str(ek.context), "-c", str(ctx), "-G", algorithm, "-g", "sha256",
                 "-s", scheme, "-u", str(pub), "-n", str(name), "-r", str(priv))
        return TpmKey(ctx, pub, name)

    def _primary(self) -> Path:
        ctx = self._file("primary.ctx")
        self.run("tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", str(ctx))
        return ctx

    def create_key(self, attributes: str = RESIDENT_KEY, algorithm: str = "ecc256") -> tuple[TpmKey, str]:
        """``tpm2_create`` under an owner primary, loaded and made persistent: (key, persistent handle)."""
        primary = self._primary()
        pub, priv, ctx, name = (self._file(s) for s in ("key.pub", "key.priv", "key.ctx", "key.name"))
        self.run("tpm2_create", "-C", str(primary), "-G", algorithm, "-u", str(pub), "-r", str(priv),
                 "-a", attributes)
        self.run("tpm2_load", "-C", str(primary), "-u", str(pub), "-r", str(priv), "-c", str(ctx), "-n", str(name))
        handle = hex(next(self._handles))
        self.run("tpm2_evictcontrol", "-c", str(ctx), handle)
        return TpmKey(Path(handle), pub, name), handle

    def csr(self, handle: str, common_name: str) -> str:
        """A PKCS#10 request for the key at ``handle``, signed in the TPM.

        tpm2-openssl makes the request body (the key as the TPM reports it); its own
        signature is redone with ``tpm2_sign``, because tpm2-openssl 1.1 writes NULL
        parameters into ecdsa-with-SHA256, which RFC 5758 3.2 forbids (and which
        cryptography refuses).
        """
        out = self._file("csr.pem")
        self.run("openssl", "req", "-new", "-provider", "tpm2", "-provider", "default", "-key", f"handle:{handle}",
                 "-subj", f"/CN={common_name}", "-out", str(out))
        request = asn1csr.CertificationRequest.load(pem.unarmor(out.read_bytes())[2])
        info = request["certification_request_info"]
        digest, signature = self._file("digest"), self._file("signature")
        digest.write_bytes(hashlib.sha256(info.dump()).digest())
        self.run("tpm2_sign", "-c", handle, "-g", "sha256", "-d", str(digest), "-f", "plain", "-o", str(signature))
        fixed = asn1csr.CertificationRequest({"certification_request_info": info,
                                              "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                                              "signature": signature.read_bytes()})
        return pem.armor("CERTIFICATE REQUEST", fixed.dump()).decode()

    def certify(self, key: TpmKey, ak: TpmKey) -> tuple[bytes, bytes]:
        """``tpm2_certify`` of ``key`` by ``ak``: (TPMS_ATTEST, TPMT_SIGNATURE)."""
        attest, signature = self._file("attest"), self._file("sig")
        self.run("tpm2_certify", "-c", str(key.context), "-C", str(ak.context), "-g", "sha256",
                 "-o", str(attest), "-s", str(signature), "-f", "tss")
        return attest.read_bytes(), signature.read_bytes()

    def activate(self, ak: TpmKey, ek: TpmKey, credential_file: bytes) -> bytes:
        """``tpm2_activatecredential`` (EK authorized by a PolicySecret session): the secret."""
        cred, out, session = self._file("cred"), self._file("secret"), self._file("session.ctx")
        cred.write_bytes(credential_file)
        self.run("tpm2_startauthsession", "--policy-session", "-S", str(session))
        try:
            self.run("tpm2_policysecret", "-S", str(session), "-c", "e")
            self.run("tpm2_activatecredential", "-c", str(ak.context), "-C", str(ek.context), "-i", str(cred),
                     "-o", str(out), "-P", f"session:{session}")
        finally:
            self.run("tpm2_flushcontext", str(session))
        return out.read_bytes()


@contextmanager
def resource_manager(tpm: SoftTpm) -> Iterator[dict[str, str]]:
    """``tpm2-abrmd`` in front of ``tpm``, on a D-Bus of its own: the environment its clients need.

    swtpm has three transient object slots; the tpm2-openssl provider keeps a hash
    sequence per digest context, and a TLS 1.3 handshake copies its transcript hash
    more often than that. The resource manager swaps objects in and out, as a device's
    kernel resource manager (/dev/tpmrm0) does. While it runs it holds swtpm's one
    connection, so ``tpm.run`` is not for use inside the block.
    """
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    abrmd: subprocess.Popen[bytes] | None = None
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": address}
        abrmd = subprocess.Popen(["tpm2-abrmd", "--session", f"--tcti={tpm.tcti}", "--allow-root"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tcti = "tabrmd:bus_type=session"
        env |= {"TPM2TOOLS_TCTI": tcti, "TPM2OPENSSL_TCTI": tcti}
        for _ in range(500):  # until abrmd owns its bus name; a readiness wait, not a time limit
            probe = subprocess.run(["tpm2_getcap", "properties-fixed"], env=env, capture_output=True, check=False)
            if probe.returncode == 0:
                break
            if abrmd.poll() is not None:
                raise RuntimeError("tpm2-abrmd exited")
            time.sleep(0.02)
        else:
            raise RuntimeError("tpm2-abrmd does not answer")
        yield env
    finally:
        for process in (abrmd, bus):
            if process is not None:
                process.terminate()
                process.wait()
        if bus.stdout is not None:
            bus.stdout.close()


@pytest.fixture
def tpm_maker(tmp_path: Path) -> TpmMaker:
    """A TPM manufacturer of this test's own."""
    return TpmMaker(tmp_path / "maker")


@pytest.fixture
def tpm_device(tmp_path: Path, tpm_maker: TpmMaker) -> Iterator[SoftTpm]:
    """A TPM made by ``tpm_maker``, running as a socket TPM."""
    tpm = SoftTpm(tmp_path / "tpm", tpm_maker)
    try:
        yield tpm
    finally:
        tpm.close()
