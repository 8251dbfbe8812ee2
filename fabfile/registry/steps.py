"""The steps of a registry plan, one builder each: what it changes, why, its script and its undo (pure).

``plan.plan`` decides which are needed; these say what each one is.
"""

from __future__ import annotations

from ..sh import cmd
from ..steps import Kind, Step, Upload
from .scripts import (
    recreate_script,
    restore_container_script,
    restore_file_script,
    restore_link_script,
    switch_link_script,
)
from .spec import CERT_NAME, ENV_NAME, HTPASSWD_NAME, KEY_NAME, Desired


def restore_previous(want: Desired) -> Step:
    reg = want.registry
    return Step(Kind.RESTORE_PREVIOUS, f"restore {reg.container}-previous left by an interrupted run",
                target=reg.container, why="an interrupted run renamed the container and stopped there",
                script=cmd("{} rename {} {}", reg.engine, reg.container + "-previous", reg.container))


def write_certs(want: Desired) -> Step:
    return Step(Kind.WRITE_CERTS, f"write {want.cert_dir_name}/ (certificate and key)", target=want.cert_dir,
                why="a new folder: nothing reads it before the link switch or the re-create",
                files=(Upload(f"{want.cert_dir}/{KEY_NAME}", want.key_pem, 0o600),
                       Upload(f"{want.cert_dir}/{CERT_NAME}", want.cert_pem, 0o644)))


def write_users(want: Desired) -> Step:
    path = want.htpasswd_path
    return Step(Kind.WRITE_USERS, f"write auth/{HTPASSWD_NAME} (the registry reloads it live)", target=path,
                files=(Upload(path, want.htpasswd, 0o600),), undo=restore_file_script(path, remove_if_none=False),
                check=True)


def write_env(want: Desired) -> Step:
    path = want.env_path
    return Step(Kind.WRITE_ENV, f"write {ENV_NAME} (registry.env, values not shown)", target=path,
                files=(Upload(path, want.env_file, 0o600),),
                undo=restore_file_script(path, remove_if_none=True))   # the previous env file, or none


def switch_link(want: Desired, current: str | None) -> Step:
    """``current``: the probe's LINK (a folder name, 'DIR' for the seed's plain folder, or None)."""
    data_dir, legacy = want.registry.data_dir, current == "DIR"
    return Step(Kind.SWITCH_LINK, f"point certs -> {want.cert_dir_name}", target=want.cert_dir_name,
                why="the seed's plain certs folder is kept as .certs-legacy" if legacy else "",
                script=switch_link_script(data_dir, want.cert_dir_name, legacy=legacy),
                undo=restore_link_script(data_dir, None if legacy else current, legacy=legacy))


def copy_images(volume: str) -> Step:
    return Step(Kind.COPY_IMAGES, f"copy images from volume {volume} to storage/", target=volume,
                why="done by the re-create script, once the old container has stopped")


def recreate(want: Desired, reasons: tuple[str, ...], *, has_old: bool, volume: str | None) -> Step:
    reg = want.registry
    return Step(Kind.RECREATE, f"re-create container {reg.container}: {'; '.join(reasons)}", target=reg.container,
                why="; ".join(reasons),
                script=recreate_script(reg.engine, want.spec, has_old=has_old, migrate_from=volume,
                                       data_dir=reg.data_dir),
                undo=restore_container_script(reg.engine, reg.container), check=True)


def start(want: Desired) -> Step:
    reg = want.registry
    return Step(Kind.START, f"start container {reg.container} (it was stopped)", target=reg.container,
                script=cmd("{} start {} >/dev/null", reg.engine, reg.container), check=True)


def remove_previous(want: Desired) -> Step:
    name = want.registry.container
    return Step(Kind.REMOVE_PREVIOUS, f"remove {name}-previous left by an interrupted run", target=name + "-previous",
                why="the container is proven healthy first; then the cleanup removes it", check=True)
