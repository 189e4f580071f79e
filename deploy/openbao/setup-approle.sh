#!/usr/bin/env bash
# Prepare an initialized, unsealed OpenBao/Vault for dm-bootstrap; idempotent.
#   BAO_ADDR=https://vault.internal:8200 BAO_TOKEN=<admin token> setup-approle.sh /etc/dmboot
# Mounts Transit and KV v2 (unless mounted), loads the policy `dmboot secrets policy` prints,
# creates the AppRole and writes OUT_DIR/role-id and OUT_DIR/secret-id (0600).
# Mount names and key prefix follow the DMBOOT_VAULT_* settings, as the service reads them.
set -euo pipefail
out_dir="${1:?usage: setup-approle.sh OUT_DIR}"
bao="${BAO:-bao}"
dmboot="${DMBOOT:-dmboot}"
role="${DMBOOT_APPROLE_NAME:-dmboot}"
transit="${DMBOOT_VAULT_TRANSIT_MOUNT:-transit}"
kv="${DMBOOT_VAULT_KV_MOUNT:-secret}"

# Read the lists once: `bao ... | grep -q` would fail under pipefail when grep stops reading early.
mounts="$("$bao" secrets list -format=json)"
auths="$("$bao" auth list -format=json)"
grep -q "\"$transit/\"" <<<"$mounts" || "$bao" secrets enable -path="$transit" transit
grep -q "\"$kv/\"" <<<"$mounts" || "$bao" secrets enable -path="$kv" -version=2 kv
grep -q '"approle/"' <<<"$auths" || "$bao" auth enable approle

"$dmboot" secrets policy --ca-keys "${DMBOOT_CA_KEYS:-vault-transit}" | "$bao" policy write "$role" -
"$bao" write "auth/approle/role/$role" token_policies="$role" token_no_default_policy=true \
    token_ttl=1h token_max_ttl=24h secret_id_ttl=0 >/dev/null

umask 077
mkdir -p "$out_dir"
"$bao" read -field=role_id "auth/approle/role/$role/role-id" > "$out_dir/role-id"
"$bao" write -f -field=secret_id "auth/approle/role/$role/secret-id" > "$out_dir/secret-id"
echo "AppRole $role: role id in $out_dir/role-id, secret id in $out_dir/secret-id"
