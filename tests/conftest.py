"""Shared fixtures: paths to the shipped fixtures and the shared reference data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chromium import find_chromium

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "resources" / "fixtures"
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared_complexes() -> Path:
    path = SHARED / "complexes"
    if not path.is_dir():
        pytest.skip("shared reference complexes not present next to the repository")
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium binary of the browser tests; skipped without one, failed under ``VSCREEN_REQUIRE_CHROMIUM``."""
    binary = find_chromium()
    if binary is None:
        message = "chromium is not installed (.ci/run installs it with apt-get)"
        pytest.fail(message) if os.environ.get("VSCREEN_REQUIRE_CHROMIUM") else pytest.skip(message)
    return binary
