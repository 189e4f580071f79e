"""schemathesis against the served OpenAPI document: anonymous and with a token per role.

Every check runs (ignored_auth aside, see _EXCLUDED), positive_data_acceptance included:
every generated request must get an answer that is not a server error and that
conforms to the document, and a request the document calls valid must not be refused
as malformed (bar the literal exceptions in _BEYOND_SCHEMA_*). Anonymous calls must
change nothing (the database tables compared before and after).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings, strategies
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import ignored_auth
from sqlalchemy import text

from bootstrap.app import create_app
from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from tests.enrollment.support import GROUP, configure, make_maker
from tests.factories import make_csr

pytestmark = pytest.mark.slow

ROLES = ["security-admin", "provisioning-admin", "factory-line", "auditor"]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, Any]]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings(data_dir=folder / "data", database_url=f"sqlite:///{folder / 'dmboot.db'}",
                         keystore_passphrase=Secret("test-" + secrets.token_hex(8)), public_url="https://dmboot.test")
    runtime, _ = Runtime.initialize(settings_, actor="test")
    configure(runtime)
    app = create_app(runtime=runtime)
    try:
        yield runtime, app
    finally:
        runtime.close()


def _state(runtime: Runtime) -> dict[str, int]:
    counts = {}
    with runtime.database.engine.connect() as connection:
        for table in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'").scalars():
            if table in ("audit_event", "audit_head", "login_throttle", "used_nonce", "console_session"):
                continue  # refusals are audited; that is the point, not a change of state
            counts[table] = int(connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())  # noqa: S608
    return counts


# ignored_auth probes by removing credentials from the case, but ours travel as call headers,
# so it cannot remove them; the anonymous test checks instead that protected operations refuse.
_EXCLUDED = [ignored_auth]


# What no JSON schema can state, so a 400 for it is not "valid data rejected" (every other check still
# applies): an MO instance in a profile is checked against the DDF of its MOID (docs/api.md, "profile");
# a PEM text must decode (its "format" names what it is, but JSON Schema does not assert formats, and
# schemathesis's coverage phase sends other strings); the TPM members are base64 of TPM structures
# (TPM2B_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE, an EK certificate, a sealed challenge) that must parse and
# agree with each other (docs/tpm.md). Problem fields, and problem types without a field.
_BEYOND_SCHEMA_FIELDS = {"extra_mos", "trust_anchor_pem", "pem", "csr", "ek_certificate", "ek_chain", "ek_public",
                         "ak_public", "key_public", "certify_info", "signature", "secret", "challenge"}
_BEYOND_SCHEMA_TYPES = {"urn:dmboot:problem:bad-csr", "urn:dmboot:problem:bad-encoding"}


def _beyond_schema(case: Any, response: Any) -> bool:
    if response.status_code != 400:
        return False
    problem = response.json()
    # An MO instance is free-form JSON until its DDF is read: a NUL in it meets the NUL guard first.
    in_mo = isinstance(case.body, dict) and "extra_mos" in case.body and "NUL" in problem.get("detail", "")
    return problem.get("field") in _BEYOND_SCHEMA_FIELDS or problem.get("type") in _BEYOND_SCHEMA_TYPES or in_mo


def _call_and_validate(case: Any, **kwargs: Any) -> Any:
    """``case.call_and_validate`` with every check; a 400 for what no schema can state is not a failure."""
    response = case.call(**kwargs)
    try:
        case.validate_response(response, excluded_checks=_EXCLUDED)
    except FailureGroup as group:
        if not (_beyond_schema(case, response) and all(isinstance(e, RejectedPositiveData) for e in group.exceptions)):
            raise
    return response


def _pem_formats() -> None:
    """Values of the PEM formats the bodies declare: schemathesis cannot make a certificate from a pattern."""
    csrs = [make_csr(None).decode() for _ in range(3)]
    cas = [make_maker(f"Fuzz CA {i}").cert.public_bytes(Encoding.PEM).decode() for i in range(3)]
    schemathesis.openapi.format("pkcs10-pem", strategies.sampled_from(csrs))
    schemathesis.openapi.format("x509-pem", strategies.sampled_from(cas))


def _operations(app: Any) -> list[Any]:
    _pem_formats()
    loaded = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    operations: list[Any] = []
    for result in loaded.get_all_operations():
        operation = getattr(result, "ok", None)
        assert operation is not None, f"the served OpenAPI document is invalid: {result}"
        operations.append(operation())
    return operations


def _fuzz(app: Any, examples: int, check: Callable[[Any], None]) -> int:
    """Run ``check`` on ``examples`` generated cases of every operation; the number of operations."""
    operations = _operations(app)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            check(case)

        run()
    return len(operations)


def test_anonymous_calls_change_nothing(fuzzed: tuple[Runtime, Any]) -> None:
    runtime, app = fuzzed

    def check(case: Any) -> None:
        before = _state(runtime)
        response = _call_and_validate(case)
        assert _state(runtime) == before, (case.method, case.path)
        if case.operation.definition.raw.get("x-permission"):
            assert response.status_code >= 400, (case.method, case.path, response.status_code)

    assert _fuzz(app, 8, check) > 30


@pytest.mark.parametrize("role", ROLES)
def test_calls_with_a_token_per_role(fuzzed: tuple[Runtime, Any], role: str) -> None:
    runtime, app = fuzzed
    # A factory line provisions for named profiles only (a line without one is refused at creation).
    profiles = [GROUP] if role == "factory-line" else None
    token = runtime.tokens.create(f"fuzz-{role}-{secrets.token_hex(3)}", [role], actor="test",
                                  allowed_profiles=profiles)
    _fuzz(app, 5, lambda case: _call_and_validate(case, headers={"authorization": f"Bearer {token}"}))
