"""The certificate row's names come from what was signed, and equal what the certificate says."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec

from bootstrap.runtime import Runtime
from bootstrap.services.pipeline import certificate_values, leaf_profile, sign
from pki.profiles import Names


def test_the_row_s_names_from_the_signed_names_equal_the_certificate_s(configured: Runtime) -> None:
    names = Names(common_name="dm.example.net", dns=("dm.example.net", "dm2.example.net"),
                  ips=(ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("2001:db8::7")),
                  uris=("urn:dmboot:devid:IMEI:350000000000700",))
    now = datetime.now(UTC)
    with configured.database.session() as session:
        ca, authority = configured.authorities.active(session)
    issued = sign(authority, ec.generate_private_key(ec.SECP256R1()).public_key(), names, leaf_profile("dm-server"),
                  None, now)
    common = {"authority_id": ca.id, "key_type": "p256", "actor": "test", "request_id": None, "now": now}
    from_names = certificate_values(issued, names=names, **common)
    read_back = certificate_values(issued, **common)  # from the certificate's own extension
    assert from_names == read_back
    assert from_names["sans"] == ('["dns:dm.example.net", "dns:dm2.example.net", "ip:192.0.2.7", "ip:2001:db8::7",'
                                  ' "uri:urn:dmboot:devid:IMEI:350000000000700"]')
    assert from_names["device_id"] == "IMEI:350000000000700"
