"""The seed's registry made by hand (its README's procedure), which the take-over tests start from
(tests/e2e/test_registry.py with docker, tests/e2e/test_kinds.py with podman)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509

from fabfile import certs, htpasswd

USER, PASSWORD = "seed", "seed-password"


def seed_run(engine: str) -> str:
    """The seed's script: its files from /tmp/seed.* into /var/lib/docker-registry, then `ENGINE run`
    of registry:2 with an anonymous volume (docker; podman as on its CentOS 8 host)."""
    return f"""
set -e
mkdir -p /var/lib/docker-registry/certs /var/lib/docker-registry/auth
cp /tmp/seed.crt /var/lib/docker-registry/certs/registry_auth.crt
cp /tmp/seed.key /var/lib/docker-registry/certs/registry_auth.key
cp /tmp/seed.htpasswd /var/lib/docker-registry/auth/registry.password
{engine} run -d -p 443:443 --name registry --restart=always -v /var/lib/docker-registry:/data \
  -e REGISTRY_AUTH=htpasswd -e "REGISTRY_AUTH_HTPASSWD_REALM=Registry Realm" \
  -e REGISTRY_AUTH_HTPASSWD_PATH=/data/auth/registry.password -e REGISTRY_HTTP_ADDR=0.0.0.0:443 \
  -e REGISTRY_HTTP_TLS_CERTIFICATE=/data/certs/registry_auth.crt \
  -e REGISTRY_HTTP_TLS_KEY=/data/certs/registry_auth.key registry:2 >/dev/null
"""


def upload_seed_files(fleet: Any) -> x509.Certificate:
    """A self-signed certificate for registry.lab and its address, its key and an htpasswd with the one
    user the seed made by hand, written to /tmp/seed.* on the registry host; returns the certificate."""
    spec = certs.CertSpec(subject=(("CN", "registry.lab"),),
                          sans=(certs.parse_san("registry.lab"), certs.parse_san(fleet.lab.address("registry"))),
                          key_type="ecdsa-p256")
    key = certs.generate_key("ecdsa-p256")
    cert = certs.build_self_signed(spec, key, dt.datetime.now(dt.UTC))
    for name, data in (("seed.crt", certs.cert_pem(cert)), ("seed.key", certs.private_key_pem(key)),
                       ("seed.htpasswd", htpasswd.Htpasswd().with_user(USER, PASSWORD, 10).render())):
        fleet.lab.run("registry", f"cat > /tmp/{name}", input=data)
    return cert
