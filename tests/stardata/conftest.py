"""Fixtures for the stardata connector tests: a local mirror server, no network, no sleeps."""

from __future__ import annotations

import socket

import pytest

from stardata.testing import MirrorServer, write_allstar, write_tiny_combined19


@pytest.fixture(autouse=True)
def _no_backoff_sleep(monkeypatch):
    """Retries never sleep for real in tests."""
    monkeypatch.setenv("STARDATA_BACKOFF_SCALE", "0")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Refuse any connection that is not to 127.0.0.1 (a test touching the network fails)."""
    original = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"network access to {host} attempted in a test")
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def mirror():
    """A started :class:`MirrorServer` (tables and files added by each test)."""
    with MirrorServer() as server:
        yield server


@pytest.fixture(scope="session")
def dust_dir(tmp_path_factory):
    """A $DUST_DIR holding a tiny real-layout combined19/combine19.h5."""
    folder = tmp_path_factory.mktemp("dust")
    write_tiny_combined19(folder)
    return folder


@pytest.fixture(scope="session")
def allstar_path(tmp_path_factory):
    """A 300-row allStar-format file (5 duplicates) shared by the read-only tests."""
    return write_allstar(tmp_path_factory.mktemp("apogee") / "allStar-test.fits", 300, seed=3)
