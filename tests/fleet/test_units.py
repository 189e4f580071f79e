"""The systemd units of deploy/ pass `systemd-analyze verify`, with this machine's binaries in ExecStart."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fleet.topology import DEPLOY
from tests.support.openbao import find_bao


def test_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    bao = find_bao()
    if analyze is None or bao is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze or bao is missing (scripts/test installs them)")
        pytest.skip("systemd-analyze or bao is missing")
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
