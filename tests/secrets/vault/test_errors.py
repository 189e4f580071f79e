"""No hvac or requests exception escapes; errors a real server will not produce on demand are mocked.

Mocks are allowed here only: everything else runs against a real OpenBao.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import hvac.adapters
import hvac.exceptions
import pytest
import requests

from bootstrap.errors import (
    SecretAccessDenied,
    SecretConflict,
    SecretNotFound,
    SecretStoreError,
    SecretStoreUnavailable,
)
from bootstrap.secrets.base import KeyRef
from bootstrap.secrets.vault.store import VaultSecretStore
from pki.errors import SignerError, SignerUnavailable
from pki.keys import KeyType

HVAC_ERRORS = [
    pytest.param(hvac.exceptions.InternalServerError("boom", errors=["boom"]),
                 SecretStoreUnavailable, id="500"),
    pytest.param(hvac.exceptions.BadGateway("proxy"), SecretStoreUnavailable, id="502"),
    pytest.param(hvac.exceptions.VaultDown("Vault is sealed", errors=["Vault is sealed"]),
                 SecretStoreUnavailable, id="503"),
    pytest.param(hvac.exceptions.VaultNotInitialized("not init"), SecretStoreUnavailable, id="501"),
    pytest.param(hvac.exceptions.RateLimitExceeded("slow down"), SecretStoreUnavailable, id="429"),
    pytest.param(hvac.exceptions.PreconditionFailed("wait"), SecretStoreUnavailable, id="412"),
    pytest.param(hvac.exceptions.UnexpectedError("teapot"), SecretStoreUnavailable, id="other"),
    pytest.param(hvac.exceptions.Forbidden("permission denied", errors=["permission denied"]),
                 SecretAccessDenied, id="403"),
    pytest.param(hvac.exceptions.Unauthorized("who"), SecretAccessDenied, id="401"),
    pytest.param(hvac.exceptions.InvalidPath(), SecretNotFound, id="404"),
    pytest.param(hvac.exceptions.InvalidRequest(errors=["check-and-set parameter did not match"]),
                 SecretConflict, id="400-cas"),
    pytest.param(hvac.exceptions.InvalidRequest(errors=["key not found"]), SecretNotFound, id="400-key"),
    pytest.param(hvac.exceptions.InvalidRequest(errors=["bad input"]), SecretStoreError, id="400"),
    pytest.param(hvac.exceptions.UnsupportedOperation("no"), SecretStoreError, id="405"),
    pytest.param(hvac.exceptions.ParamValidationError("bad"), SecretStoreError, id="hvac-param"),
]
TRANSPORT_ERRORS = [
    pytest.param(requests.exceptions.ConnectionError("refused"), id="connection"),
    pytest.param(requests.exceptions.ConnectTimeout("slow"), id="connect-timeout"),
    pytest.param(requests.exceptions.ReadTimeout("slow"), id="read-timeout"),
    pytest.param(requests.exceptions.SSLError("bad cert"), id="tls"),
    pytest.param(requests.exceptions.ChunkedEncodingError("cut"), id="chunked"),
]
OPERATIONS: list[Any] = [
    pytest.param(lambda s: s.put("p", {"k": "v"}, cas=0), id="put"),
    pytest.param(lambda s: s.get("p"), id="get"),
    pytest.param(lambda s: s.create_key("k", KeyType.P256), id="create_key"),
    pytest.param(lambda s: s.rotate_key("k"), id="rotate_key"),
    pytest.param(lambda s: s.signer(KeyRef("vault-transit", "k", 1, KeyType.P256)), id="signer"),
]

Operation = Callable[[VaultSecretStore], object]


def failing_requests(error: Exception) -> Any:
    """Make every request hvac sends raise ``error``, as hvac or requests would."""
    return mock.patch.object(hvac.adapters.RawAdapter, "request", autospec=True, side_effect=error)


@pytest.mark.parametrize(("error", "expected"), HVAC_ERRORS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_hvac_errors_become_secret_store_errors(
    store: VaultSecretStore, operation: Operation, error: Exception, expected: type[Exception]
) -> None:
    with failing_requests(error), pytest.raises(expected) as raised:
        operation(store)
    assert not isinstance(raised.value, hvac.exceptions.VaultError)


@pytest.mark.parametrize("error", TRANSPORT_ERRORS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_transport_errors_become_unavailable(
    store: VaultSecretStore, operation: Operation, error: Exception
) -> None:
    with failing_requests(error), pytest.raises(SecretStoreUnavailable) as raised:
        operation(store)
    assert raised.value.retry_after > 0


def test_tls_failure_points_at_the_ca_bundle(store: VaultSecretStore) -> None:
    with failing_requests(requests.exceptions.SSLError("bad")), pytest.raises(SecretStoreUnavailable,
                                                                              match="ca_bundle"):
        store.get("p")


def test_denial_names_path_capability_and_the_fix(store: VaultSecretStore, prefix: str) -> None:
    error = hvac.exceptions.Forbidden("permission denied", errors=["permission denied"])
    with failing_requests(error), pytest.raises(SecretAccessDenied) as denied:
        store.put("a/b", {"k": "v"}, cas=0)
    assert f"'create' on secret/data/{prefix}/secrets/a/b" in denied.value.message
    assert "dmboot secrets policy" in denied.value.message


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(hvac.exceptions.InternalServerError("boom"), SignerUnavailable, id="500"),
        pytest.param(requests.exceptions.ConnectionError("refused"), SignerUnavailable, id="refused"),
        pytest.param(hvac.exceptions.Forbidden("permission denied"), SignerError, id="403"),
        pytest.param(hvac.exceptions.InvalidRequest(errors=["bad"]), SignerError, id="400"),
    ],
)
def test_signer_errors_are_pki_errors(
    store: VaultSecretStore, error: Exception, expected: type[Exception]
) -> None:
    signer = store.signer(store.create_key("ca", KeyType.P256))
    with failing_requests(error), pytest.raises(expected) as raised:
        signer.sign(b"tbs")
    assert not isinstance(raised.value, SecretStoreError | hvac.exceptions.VaultError)
    if isinstance(raised.value, SignerUnavailable):
        assert raised.value.retry_after > 0


@pytest.mark.parametrize(
    "answer",
    [{"data": {}}, {"data": {"signature": "vault:v2:AAAA"}}, {"data": {"signature": "vault:v1:not base64!"}}],
    ids=["no-signature", "other-version", "not-base64"],
)
def test_signer_refuses_odd_answers(store: VaultSecretStore, answer: dict[str, Any]) -> None:
    signer = store.signer(store.create_key("ca", KeyType.P256))
    with mock.patch.object(store.client, "write", return_value=answer), pytest.raises(SignerError):
        signer.sign(b"tbs")


@pytest.mark.parametrize("error", [requests.exceptions.ConnectionError("refused"),
                                   hvac.exceptions.InternalServerError("boom")], ids=["refused", "500"])
def test_check_never_raises(store: VaultSecretStore, error: Exception) -> None:
    with failing_requests(error):
        [reachable] = store.check()
    assert not reachable.ok and reachable.hint
