"""The deployment files work as a user installs them: the systemd unit."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .servers import ROOT

UNIT = ROOT / "deploy" / "websocket-echo.service"


def installed_unit(directory: Path) -> Path:
    """The unit as it would be installed from this checkout (its paths made this one's)."""
    unit = directory / UNIT.name
    unit.write_text(UNIT.read_text().replace("/srv/websocket-echo", str(ROOT)))
    return unit


def test_systemd_unit_verifies_cleanly_and_is_enableable(tmp_path):
    unit = installed_unit(tmp_path)
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    sections = dict(re.findall(r"^\[(\w+)\]\n((?:(?!\[).*\n)*)", unit.read_text(), re.M))
    assert "WantedBy=multi-user.target" in sections["Install"]  # else enable does nothing
    assert "DynamicUser=yes" in sections["Service"]  # never root


def test_systemd_unit_is_hardened(tmp_path):
    """systemd's exposure score, 0 (locked down) to 10 (exposed), at most 2; an empty unit: 9.6.

    (``--threshold`` counts in tenths.)
    """
    unit = installed_unit(tmp_path)
    command = ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)]
    security = subprocess.run(command, capture_output=True, text=True)
    assert security.returncode == 0, security.stdout[-2000:]
