"""Fixtures for the unit tests: no network, no SSH, no root.

Keys are ECDSA P-256 (fast) and cached per session; RSA appears only where
RSA is the point. ``NOW`` (in _support) is one fixed instant per session,
close to the real clock so that certificates built from it also work in real
TLS handshakes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from cryptography import x509

from fabfile import certs
from fabfile import deploy as D

from _support import NOW, make_spec
from fake_hosts import World


@pytest.fixture(scope="session")
def key_cache():
    """``key_cache(name, key_type='ecdsa-p256')``: one generated key per name for the whole session."""
    cache: dict[tuple[str, str], certs.PrivateKey] = {}

    def get(name: str, key_type: str = "ecdsa-p256") -> certs.PrivateKey:
        if (name, key_type) not in cache:
            cache[(name, key_type)] = certs.generate_key(key_type)
        return cache[(name, key_type)]

    return get


@pytest.fixture(scope="session")
def spec() -> certs.CertSpec:
    return make_spec()


@pytest.fixture(scope="session")
def self_signed(key_cache, spec) -> tuple[x509.Certificate, certs.PrivateKey]:
    key = key_cache("server")
    return certs.build_self_signed(spec, key, NOW), key


@pytest.fixture(scope="session")
def ca_chain(key_cache, spec):
    """(root cert, root key, leaf cert, leaf key) of CA mode."""
    ca_key, leaf_key = key_cache("ca"), key_cache("leaf")
    root = certs.build_ca(certs.build_name((("O", "registry-tls tests"), ("CN", "test CA"))), ca_key, NOW, 3650, spec.sans)
    leaf = certs.build_leaf(spec, leaf_key, root, ca_key, NOW)
    return root, ca_key, leaf, leaf_key


@pytest.fixture(scope="session")
def rsa_2048(key_cache):
    return key_cache("rsa", "rsa-2048")


@pytest.fixture(scope="session")
def openssl() -> str:
    path = shutil.which("openssl")
    if not path:
        pytest.skip("openssl is not installed")
    return path


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    """A deployed fleet (fake_hosts.World: a real TLS registry on 127.0.0.1, fake clients), its recorded
    calls cleared: what status, untrust and rotation start from. test_deploy overrides it with a bare one."""
    w = World(tmp_path)
    try:
        report = D.deploy_all(w.s, w.s.inv.clients)   # every client trusts the first certificate
        assert report.exit_code == 0
        w.fleet.calls.clear()
        yield w
    finally:
        w.tls.close()
