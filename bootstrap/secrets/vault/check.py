"""``dmboot secrets check`` for Vault: one :class:`CheckResult` per thing that must hold.

In order: reachable, unsealed (``sys/seal-status``), authenticated
(``auth/token/lookup-self``), the KV mount is version 2 and the Transit mount exists
(``sys/internal/ui/mounts/<mount>``), and the token holds every rule of the
service policy (``sys/capabilities-self``). Nothing after "reachable" and
"unsealed" can pass when those fail, so the checks stop there.
"""

from __future__ import annotations

from bootstrap.errors import SecretStoreError, SecretStoreUnavailable
from bootstrap.secrets.base import CheckResult
from bootstrap.secrets.vault.client import VaultClient
from bootstrap.secrets.vault.policy import PolicyRule, policy_rules

__all__ = ["run_checks"]

_POLICY_HINT = "run `dmboot secrets policy` and load it with `bao policy write`, then attach it to the token"


def run_checks(client: VaultClient) -> list[CheckResult]:
    """Run every check against the Vault ``client`` talks to; never raises a SecretStoreError."""
    config = client.config
    results = _server_checks(client)
    if not all(r.ok for r in results):
        return results
    results.append(_auth_check(client))
    results.append(_mount_check(client, config.kv_mount, "kv", "2"))
    if config.ca_key_mode == "transit":
        results.append(_mount_check(client, config.transit_mount, "transit", None))
    results += _capability_checks(client, policy_rules(config))
    return results


def _server_checks(client: VaultClient) -> list[CheckResult]:
    addr = client.config.addr
    try:
        status = client.seal_status()
    except SecretStoreError as exc:
        hint = "start Vault, or fix addr / ca_bundle" if isinstance(exc, SecretStoreUnavailable) else ""
        return [CheckResult("reachable", False, exc.message, hint or "check addr and namespace")]
    reachable = CheckResult("reachable", True, f"{addr}, version {status.get('version', '?')}")
    if status.get("sealed") is not False:
        return [reachable, CheckResult("unsealed", False, "Vault is sealed",
                                       "unseal it: `bao operator unseal` with a quorum of key holders")]
    return [reachable, CheckResult("unsealed", True)]


def _auth_check(client: VaultClient) -> CheckResult:
    try:
        data = client.lookup_self().get("data")
    except SecretStoreError as exc:
        return CheckResult("authenticated", False, exc.message,
                           "check the token, or the AppRole role id and secret id file; " + _POLICY_HINT)
    info = data if isinstance(data, dict) else {}
    ttl = info.get("ttl") or "no expiry"
    return CheckResult("authenticated", True, f"policies {info.get('policies')}, ttl {ttl}")


def _mount_check(client: VaultClient, mount: str, engine: str, version: str | None) -> CheckResult:
    name = f"{engine} mount {mount}/"
    try:
        data = client.read(f"sys/internal/ui/mounts/{mount}").get("data")
    except SecretStoreError as exc:
        return CheckResult(name, False, exc.message, f"enable it: `bao secrets enable -path={mount} "
                           f"{engine}{'-v2' if version == '2' else ''}`, or grant the policy")
    info = data if isinstance(data, dict) else {}
    options = info.get("options") if isinstance(info.get("options"), dict) else {}
    found_version = (options or {}).get("version")
    if info.get("type") != engine or (version is not None and found_version != version):
        return CheckResult(name, False, f"{mount}/ is {info.get('type')} (version {found_version})",
                           f"mount a {engine}{' version ' + version if version else ''} engine there")
    return CheckResult(name, True, f"{engine}{' v' + version if version else ''}")


def _capability_checks(client: VaultClient, rules: list[PolicyRule]) -> list[CheckResult]:
    try:
        answer = client.write("sys/capabilities-self", {"paths": [r.probe for r in rules]})
    except SecretStoreError as exc:
        return [CheckResult("capabilities", False, exc.message, _POLICY_HINT)]
    data = answer.get("data")
    granted: dict[str, object] = data if isinstance(data, dict) else answer
    return [_capability_result(rule, granted.get(rule.probe)) for rule in rules]


def _capability_result(rule: PolicyRule, granted: object) -> CheckResult:
    have = {str(c) for c in granted} if isinstance(granted, list) else set()
    missing = [c for c in rule.capabilities if c not in have]
    name = f"policy {rule.path}"
    if "root" in have or not missing:
        return CheckResult(name, True, ", ".join(rule.capabilities))
    held = ", ".join(sorted(have - {"deny"})) or "nothing"
    return CheckResult(name, False, f"missing {', '.join(missing)} (holds {held}) on {rule.probe}",
                       _POLICY_HINT)
