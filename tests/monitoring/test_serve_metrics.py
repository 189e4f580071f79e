"""`dmboot serve --workers 2 --log-format json`: metrics of both workers on one listener, JSON on stderr."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from tests.support.metrics import scrape, value
from tests.support.servers import free_port, poll, wait_ready

pytestmark = pytest.mark.slow

PASSPHRASE = "metrics-serve-passphrase"
REQUESTS = 40


def test_two_workers_one_metrics_listener_json_logs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, keystore_passphrase=Secret(PASSPHRASE))
    runtime, _ = Runtime.initialize(settings)
    with runtime.database.session() as session:
        (tmp_path / "root.pem").write_text(runtime.authorities.root_row(session).pem)
    runtime.close()
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    stderr = tmp_path / "serve.err"
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "bootstrap", "serve", "--port", str(port), "--workers", "2",
             "--log-format", "json", "--metrics-port", str(metrics_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "root.pem"))
        base = f"https://localhost:{port}"
        wait_ready(f"{base}/healthz", context, process, stderr)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        before = scrape(metrics_url)
        for index in range(REQUESTS):  # a new connection each: the kernel spreads them over the workers
            request = urllib.request.Request(f"{base}/healthz", headers={"X-Request-ID": f"load-{index}"})  # noqa: S310
            with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
                assert response.status == 200
        labels = {"route": "/healthz", "method": "GET", "status": "200"}

        def counted() -> float:
            return value(scrape(metrics_url), "dmboot_http_requests_total", **labels) \
                - value(before, "dmboot_http_requests_total", **labels)

        # A request is counted just after its response is sent: the last one may still be on its way.
        assert poll(counted, lambda n: n >= REQUESTS) == REQUESTS
        after = scrape(metrics_url)
        assert value(after, "dmboot_backend_up", backend="database") == 1
        # Each worker writes its own files (the unlabelled batch-size histogram exists from import on).
        workers = {f.name for f in (data_dir / "run" / f"metrics-{port}").glob("histogram_*.db")}
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert len(workers) == 2, workers
    lines = [json.loads(line) for line in stderr.read_text().splitlines() if line.strip()]  # each line is JSON
    ours = [x for x in lines if x["logger"] == "dmboot.access" and str(x.get("request_id")).startswith("load-")]
    assert sorted(x["request_id"] for x in ours) == sorted(f"load-{i}" for i in range(REQUESTS))
    assert {x["logger"] for x in lines} >= {"uvicorn.error", "dmboot.access", "bootstrap.server"}
