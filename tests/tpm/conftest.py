"""TPM tests: a real swtpm per test, provisioned by a TPM maker of the test's own."""

from __future__ import annotations

from tests.support.tpm import tpm_device, tpm_maker  # noqa: F401 - fixtures
