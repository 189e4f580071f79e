"""The systemd units of deploy/ pass `systemd-analyze verify`, with this machine's binaries in ExecStart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fleet.topology import DEPLOY
from tests.support.peers import require_peer


def test_units_verify(tmp_path: Path) -> None:
    analyze = require_peer("systemd-analyze")
    bao = require_peer("bao")
    installed = {"/opt/dmboot/.venv/bin/dmboot": str(Path(sys.executable).parent / "dmboot"),
                 "/usr/local/bin/bao": str(bao)}
    for unit in ("dmboot@.service", "openbao.service"):
        text = (DEPLOY / "systemd" / unit).read_text()
        for path, here in installed.items():
            text = text.replace(path, here)
        (tmp_path / unit).write_text(text)
    done = subprocess.run([analyze, "verify", "--man=no", "./dmboot@1.service", "./openbao.service"], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    # Unknown keys and bad values are warnings with exit 0: any output at all is a finding.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
