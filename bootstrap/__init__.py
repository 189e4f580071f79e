"""dm-bootstrap: OMA DM 2.0 bootstrap and credential provisioning service."""

__version__ = "0.1.0"
