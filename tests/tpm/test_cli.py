"""``dmboot tpm-ca``: register, list and disable TPM manufacturer CAs of a profile."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from tests.enrollment.support import GROUP, configure
from tests.support.chains import make_ca, make_leaf
from tests.test_cli import dm, run


def _data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    run(data_dir, "init")
    data_dir.joinpath(".url").write_text("")
    runtime = Runtime(Settings(data_dir=data_dir, keystore_passphrase=Secret("cli-test-pass")))
    try:
        configure(runtime, attestation=("tpm",))
    finally:
        runtime.close()
    return data_dir


def test_tpm_ca_add_list_disable(tmp_path: Path) -> None:
    data_dir = _data_dir(tmp_path)
    root = make_ca("Example TPM Root")
    pem = tmp_path / "root.pem"
    pem.write_bytes(root.cert.public_bytes(Encoding.PEM))
    added = json.loads(dm(data_dir, "tpm-ca", "add", "example-tpm", "--profile", GROUP, "--cert", str(pem),
                          "--json").stdout)
    assert added["name"] == "example-tpm" and added["fingerprint"].startswith("sha256:")
    dm(data_dir, "tpm-ca", "disable", "example-tpm", "--profile", GROUP)
    listed = json.loads(dm(data_dir, "tpm-ca", "list", "--json").stdout)
    assert listed == [{"profile": GROUP, "name": "example-tpm", "fingerprint": added["fingerprint"],
                       "enabled": False}]


def test_tpm_ca_refusals_are_one_line(tmp_path: Path) -> None:
    data_dir = _data_dir(tmp_path)
    root = make_ca("Example TPM Root")
    leaf, pem = make_leaf(root), tmp_path / "leaf.pem"
    pem.write_bytes(leaf.public_bytes(Encoding.PEM))
    refused = dm(data_dir, "tpm-ca", "add", "leaf", "--profile", GROUP, "--cert", str(pem), check=False)
    assert refused.exit_code == 1 and "not a CA certificate" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    unknown = dm(data_dir, "tpm-ca", "disable", "nope", "--profile", "no-such-profile", check=False)
    assert unknown.exit_code == 1 and "no enrollment profile" in unknown.stderr
