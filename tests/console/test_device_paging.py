"""The Devices page pages through every device and says how many there are."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from bootstrap.runtime import Runtime
from tests.factory.conftest import add_profiles
from tests.support.admins import login, make_admin


def test_devices_page_has_a_total_and_pages(client: TestClient, console_runtime: Runtime) -> None:
    add_profiles(console_runtime)
    for i in range(130):
        console_runtime.devices.register(f"IMEI:35{i:013d}", "line", actor="test")
    make_admin(console_runtime, "pat", "provisioning-admin")
    login(client, "pat")
    first = client.get("/console/devices").text
    assert re.search(r'id="device-total">130 devices; showing 1-100<', first)
    assert first.count('href="/console/devices/IMEI') == 100
    next_link = re.search(r'id="next-page" href="([^"]+)"', first)
    assert next_link is not None
    second = client.get(next_link.group(1).replace("&amp;", "&")).text
    assert second.count('href="/console/devices/IMEI') == 30 and 'id="next-page"' not in second
    assert "showing 101-130" in second and 'id="previous-page"' in second
    narrowed = client.get("/console/devices", params={"q": "IMEI:350000000000012"}).text
    assert re.search(r'id="device-total">1 device<', narrowed)
