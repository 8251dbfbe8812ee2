"""The registry's own reason, picked from real output of the lab's registry binary (docker-registry
2.8.2, as registry:2) and of dockerd 20.10, captured with `docker logs` / `docker run` on the lab
(``*_podman_*``: with `podman logs` on the host-kinds lab)."""

from __future__ import annotations

import pytest

from fabfile.redact import register
from fabfile.registry.reason import LIMIT, mask, reason

from _support import CASES

OUTPUTS = CASES / "registry_output"


@pytest.mark.parametrize(("case", "expected"), [
    ("storage_driver_not_registered", "panic: StorageDriver not registered: bogus-driver"),
    ("tls_certificate_missing", "fatal: open /data/certs/missing.crt: no such file or directory"),
    ("minimumtls_invalid", "fatal: unknown minimum TLS level 'tls9.9' specified for http.tls.minimumtls"),
    ("minimumtls_invalid_json", "fatal: unknown minimum TLS level 'tls9.9' specified for http.tls.minimumtls"),
    ("loglevel_config_error", ("configuration error: error parsing /etc/docker/registry/config.yml: "
                              "invalid loglevel loud Must be one of [error, warn, info, debug]")),
    # podman 4.3.1 on the host-kinds lab: `podman logs` lost a newline, once after the error (seen in one lab run of
    # two, the message ended '... debug]Usage:'), always after 'Usage:'
    ("loglevel_config_error_podman_glued", ("configuration error: error parsing /etc/docker/registry/config.yml: "
                                           "invalid loglevel loud Must be one of [error, warn, info, debug]")),
    ("loglevel_config_error_podman_usage_glued", ("configuration error: error parsing /etc/docker/registry/"
                                                 "config.yml: invalid loglevel loud Must be one of "
                                                 "[error, warn, info, debug]")),
    ("http_addr_invalid", "fatal: listen tcp: address nonsense: missing port in address"),
    ("tls_key_is_a_certificate", "fatal: tls: found a certificate rather than a key in the PEM for the private key"),
    ("engine_port_in_use", ("Error response from daemon: driver failed programming external connectivity on "
                           "endpoint p22 (7b0b66ec6a39bad0ac78d47ae0b9011ffc4aa06988020c76e3dece563ca18fb0): "
                           "Error starting userland proxy: listen tcp4 0.0.0.0:22: bind: address already in use")),
    ("engine_image_missing", ('Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: '
                             "lookup registry-1.docker.io on 10.255.255.53:53: dial udp 10.255.255.53:53: "
                             "connect: network is unreachable")),
    ("serving_with_requests", "error: response completed with error"),
])
def test_F21_reason_is_the_registrys_own_line(case, expected):
    assert reason((OUTPUTS / f"{case}.txt").read_text()) == expected


def test_a_crash_loop_twice_over_still_names_the_first_panic_not_the_stack_tail():
    text = (OUTPUTS / "storage_driver_not_registered.txt").read_text()
    assert "main.go:22 +0x25" in text  # what the message used to show
    assert reason(text + text) == "panic: StorageDriver not registered: bogus-driver"


def test_fatal_outranks_an_earlier_request_error_and_panic_outranks_fatal():
    served = (OUTPUTS / "serving_with_requests.txt").read_text()
    fatal = (OUTPUTS / "tls_certificate_missing.txt").read_text()
    assert reason(served + fatal).startswith("fatal: open /data/certs/missing.crt")
    assert reason(fatal + "panic: boom\n").startswith("panic: boom")


@pytest.mark.parametrize(("output", "expected"), [
    ("", None),
    ("\n\n", None),
    ('time="x" level=info msg="listening on [::]:443, tls"\n', None),   # nothing says what is wrong
    ("exec /bin/registry: exec format error\n", "exec /bin/registry: exec format error"),
    ("Error: crun: executable file `registry` not found in $PATH\n",      # podman's own wording
     "Error: crun: executable file `registry` not found in $PATH"),
    ('time="x" level=fatal msg=bare-word\n', "fatal: bare-word"),
    ('time="x" level=fatal msg="realm \\"Registry Realm\\" refused"\n', 'fatal: realm "Registry Realm" refused'),
])
def test_reason_edge_cases(output, expected):
    assert reason(output) == expected


def test_a_long_line_is_cut_for_the_one_line_message():
    assert len(reason("panic: " + "x" * 1000)) == LIMIT


def test_mask_hides_the_password_the_registry_prints_and_registered_secrets():
    text = (OUTPUTS / "htpasswd_missing_default_user.txt").read_text()
    assert "password=iElxXLKaZCCbGLMvK3wJhUdeqVzk06MsqnYynFVkjmA" in text
    masked = mask(text)
    assert "iElxXLKaZCCbGLMvK3wJhUdeqVzk06MsqnYynFVkjmA" not in masked and "password=*** user=docker" in masked
    assert mask('{"level":"warning","password":"s3cr\\"et","user":"docker"}') == \
        '{"level":"warning","password":"***","user":"docker"}'
    register("hunter2-registered")
    assert mask("REGISTRY_X=hunter2-registered") == "REGISTRY_X=***"
