"""Tests for bootstrap.dm: the OMA DM model."""
