# OpenBao for dm-bootstrap: integrated Raft storage (add retry_join blocks for a 3- or 5-node cluster).
storage "raft" {
  path    = "/var/lib/openbao/raft"
  node_id = "bao-1"
}

listener "tcp" {
  address       = "0.0.0.0:8200"
  tls_cert_file = "/etc/openbao/tls/server.pem"
  tls_key_file  = "/etc/openbao/tls/server-key.pem"
}

api_addr     = "https://vault.internal:8200"
cluster_addr = "https://vault.internal:8201"
ui           = false
