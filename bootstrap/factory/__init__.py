"""Factory provisioning lines: stations, batches that never double-issue, pre-registration, the station client."""
