"""Tests of the DM 1.x wire formats: WBXML, SyncML DM, bootstrap security, DMAcc 1.0."""
