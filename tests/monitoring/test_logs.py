"""Structured logs: one JSON line per request, never a secret; one line per failure class during an outage."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import create_engine
from starlette.testclient import TestClient

from bootstrap import errors
from bootstrap.app import create_app
from bootstrap.logs import FailureLog, JsonFormatter, TextFormatter, backend_of, failures, uvicorn_log_config
from bootstrap.runtime import Runtime
from bootstrap.settings import Settings
from pki.errors import SignerUnavailable

SECRET = "dmb_this-is-a-secret-token-value"

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every ``dmboot.*`` record from INFO up, formatted as JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("dmboot")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]  # every line must parse


@SQLITE
def test_one_json_line_per_request_without_secrets(runtime: Runtime, captured: io.StringIO) -> None:
    with TestClient(create_app(runtime=runtime)) as client:
        assert client.get("/healthz", headers={"x-request-id": "probe-1"}).headers["x-request-id"] == "probe-1"
        assert client.get("/api/v1/whoami", headers={"authorization": f"Bearer {SECRET}"}).status_code == 401
        assert client.get("/ca/issuing-1.pem").status_code == 200
        assert client.get("/console/login").status_code == 200
        assert client.get("/no/such/path?token=" + SECRET).status_code == 404
        token = runtime.tokens.create("auditor-client", ["auditor"], actor="test")
        assert client.get("/api/v1/whoami", headers={"authorization": f"Bearer {token}"}).status_code == 200
    lines = [line for line in _lines(captured) if line["logger"] == "dmboot.access"]
    assert [(x["method"], x["route"], x["status"], x["auth"]) for x in lines] == [
        ("GET", "/healthz", 200, "none"),
        ("GET", "/api/v1/whoami", 401, "bearer"),
        ("GET", "/ca/{file}", 200, "none"),
        ("GET", "/console/login", 200, "none"),
        ("GET", "unmatched", 404, "none"),
        ("GET", "/api/v1/whoami", 200, "bearer"),
    ]
    assert lines[0]["request_id"] == "probe-1"
    assert all(len(x["request_id"]) == 16 for x in lines[1:])
    assert [x["principal"] for x in lines] == [None] * 5 + ["token"]
    assert all(isinstance(x["duration_ms"], float) and x["level"] == "info" for x in lines)
    assert SECRET not in captured.getvalue() and token not in captured.getvalue()


@SQLITE
def test_an_outage_logs_one_line_per_failure_class_with_counts(runtime: Runtime, captured: io.StringIO,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    failures.flush()  # windows of earlier tests
    monkeypatch.setattr(failures, "interval", 3600.0)  # one window for the whole test, however slow
    captured.seek(0)  # truncate alone keeps the position: later writes would start with NULs
    captured.truncate(0)
    # The database file cannot be opened: every query raises sqlite3's OperationalError.
    runtime.database.engine = create_engine("sqlite:////proc/no-such-dir/dmboot.db")
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        statuses = {client.get("/ca/chain.pem").status_code for _ in range(20)}
    failures.flush()
    assert statuses == {503}  # the database is unavailable: not-ready, retry later (docs/security.md)
    lines = _lines(captured)
    failed = [x for x in lines if x["logger"] == "dmboot.failures"]
    assert [(x["failure_class"], x["backend"], x["count"]) for x in failed] == [
        ("database unavailable", "database", 1),
        ("database unavailable", "database", 19),
    ]
    assert "exc" not in failed[0] and "exc" not in failed[1]  # an outage is no bug: no traceback
    assert "unable to open database file" in failed[0]["error"]
    assert len([x for x in lines if x["logger"] == "dmboot.access"]) == 20


def test_failure_windows_summarize_per_class() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.failures")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    now = [100.0]
    log = FailureLog(logger, interval=60.0, clock=lambda: now[0])
    try:
        for _ in range(50):
            log.record("secret-store-unavailable", errors.SecretStoreUnavailable("sealed"))
        for _ in range(3):
            log.record("signer-unavailable", SignerUnavailable("transit down"))
        now[0] += 61
        log.record("secret-store-unavailable", errors.SecretStoreUnavailable("sealed"))
        log.flush()
    finally:
        logger.removeHandler(handler)
    lines = _lines(stream)
    assert [(x["failure_class"], x["backend"], x["count"]) for x in lines] == [
        ("secret-store-unavailable", "secrets", 1),
        ("signer-unavailable", "signer", 1),
        ("secret-store-unavailable", "secrets", 49),  # window closed: the summary ...
        ("signer-unavailable", "signer", 2),
        ("secret-store-unavailable", "secrets", 1),  # ... and the next window's first line
    ]
    assert lines[0]["error"] == "bootstrap.errors.SecretStoreUnavailable: sealed"


@pytest.mark.parametrize(("exc", "backend"), [
    pytest.param(errors.SecretAccessDenied("denied"), "secrets", id="vault-denied"),
    pytest.param(errors.SecretStoreUnavailable("sealed"), "secrets", id="vault-sealed"),
    pytest.param(SignerUnavailable("transit"), "signer", id="signer"),
    pytest.param(__import__("sqlalchemy.exc").exc.OperationalError("SELECT 1", {}, Exception("down")), "database",
                 id="sqlalchemy"),
    pytest.param(ValueError("x"), "app", id="other"),
])
def test_backend_of(exc: BaseException, backend: str) -> None:
    assert backend_of(exc) == backend


def test_text_format_and_settings() -> None:
    record = logging.LogRecord("dmboot.access", logging.INFO, __file__, 1, "GET %s %d", ("/healthz", 200), None)
    record.route = "/healthz"
    line = TextFormatter().format(record)
    assert line.endswith("INFO dmboot.access GET /healthz 200 route=/healthz")
    assert json.loads(JsonFormatter().format(record))["route"] == "/healthz"
    assert uvicorn_log_config("json")["formatters"]["dmboot"]["()"] == "bootstrap.logs.JsonFormatter"
    with pytest.raises(ValueError, match="log format"):
        uvicorn_log_config("xml")
    with pytest.raises(errors.ConfigurationError, match="log_format"):
        Settings.load({"DMBOOT_LOG_FORMAT": "xml"}, config_file=None)
