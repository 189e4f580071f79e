"""The Vault / OpenBao secret store: a typed adapter over hvac, KV v2, Transit signing, policy and checks."""
