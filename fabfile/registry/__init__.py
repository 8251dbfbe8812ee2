"""The registry host: desired state, the plan that reaches it, and a safe apply with rollback.

Remote layout (``data_dir`` is the seed's ``/var/lib/docker-registry``)::

    certs -> .certs-<fp16>/      symlink (the seed's path, for people), switched atomically
    .certs-<fp16>/registry_auth.crt (0644) registry_auth.key (0600)
    auth/registry.password       htpasswd (0600), replaced by rename: the registry re-reads it
                                 when its mtime changes, so user changes need no restart
    storage/                     image storage, bind-mounted on /var/lib/registry so that
                                 re-running the container never orphans an anonymous volume

The container gets the seed's environment and folder mounts (``:ro`` for
certs and auth; the versioned cert folder itself, so the previous container
kept for rollback still finds its own files), plus a label holding a digest of its whole spec; a
different digest, image or config means re-create, nothing else does.

Layers, each its own module:

    spec.py     desired state (pure): ContainerSpec, Desired
    plan.py     facts -> Plan: the ordered steps that are needed (pure; ../steps.py says what a plan is)
    steps.py    each step: what it changes, why, its script, its undo (pure)
    identity.py what a plan changes, by identity: fingerprints and SANs, user names, setting keys (pure)
    scripts.py  the shell scripts the steps carry, and their undo
    lock.py     the remote lock: one changing run per registry
    apply.py    deploy: look, plan, lock, run the steps, health gate, undo the applied steps
    reason.py   why a container did not come up, in the registry's own words (pure)
    failure.py  a failed change and its verified rollback, as one line (pure)
"""

from .apply import DeployJob, container_reason, deploy, gather, read_htpasswd
from .lock import machine_id
from .plan import Plan, plan
from .scripts import (
    Kept,
    cleanup_script,
    failed_name,
    keep_failed_script,
    lock_script,
    parse_kept,
    prepare_script,
    recreate_script,
    restore_container_script,
    restore_file_script,
    restore_link_script,
    rollback_script,
    switch_link_script,
    unlock_script,
)
from .spec import (
    CERT_NAME,
    HTPASSWD_NAME,
    KEY_NAME,
    LOCK_STALE_SECONDS,
    SPEC_LABEL,
    STORAGE_MOUNT,
    ContainerSpec,
    Desired,
    desired,
)

__all__ = [
    "CERT_NAME", "HTPASSWD_NAME", "KEY_NAME", "LOCK_STALE_SECONDS", "SPEC_LABEL", "STORAGE_MOUNT",
    "ContainerSpec", "DeployJob", "Desired", "Kept", "Plan",
    "cleanup_script", "container_reason", "deploy", "desired", "failed_name", "gather", "keep_failed_script",
    "lock_script", "machine_id", "parse_kept", "plan", "prepare_script", "read_htpasswd", "recreate_script",
    "restore_container_script", "restore_file_script", "restore_link_script", "rollback_script",
    "switch_link_script", "unlock_script",
]
