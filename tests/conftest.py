"""Shared pytest configuration: fixtures from tests/fixtures and common settings."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

pytest_plugins = ["tests.fixtures.prometheus"]
