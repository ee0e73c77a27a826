"""Shared fixtures: paths to the shipped fixtures and the shared reference data."""

from __future__ import annotations

from pathlib import Path

import pytest

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
