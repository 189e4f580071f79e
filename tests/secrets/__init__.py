"""Tests of bootstrap.secrets."""
