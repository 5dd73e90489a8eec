"""Fixtures shared by the store tests."""

import pytest

import spikebridge.run.store as stream
from tests.store._fake import fake_iter


@pytest.fixture
def fake_backend(monkeypatch):
    """Batches from the numpy reference (optionally slowed by ``SB_FAKE_SLEEP``) instead of an engine."""
    monkeypatch.setattr(stream, "_backend_iter", fake_iter)
