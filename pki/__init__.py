"""The certificate authority as a pure library: no HTTP, no database, no Vault client."""
