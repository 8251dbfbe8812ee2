"""The shell scripts that carry a registry plan out, and undo it. Pure: they only build text."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..sh import Exit, q
from ..steps import Kind, Step, undo_script
from .spec import FAILED_INFIX, LOG_LINES, ContainerSpec, Desired

# Root's writes in data_dir (mkdir, cp, mv, ln, rm -rf) follow links: whoever may write in data_dir or in one
# of its parents could point them anywhere (review L2). So every existing component of data_dir, as written and
# as resolved (``cd -P``), must be root's, and a folder no group or other may write (a link: root's). Prints
# ``UNSAFE <path> <why>`` for the topmost component that is not, nothing when all are. Builtins and stat only.
TRUSTED_PATH_SH = r"""unsafe=
walk() {
  p=$1
  while :; do
    if s=$(stat -c '%u %a %U %F' -- "$p" 2>/dev/null); then
      set -- $s; u=$1 m=$2 n=$3; shift 3
      if [ "$u" != 0 ]; then unsafe="$p is owned by $n (uid $u, mode $m, $*)"
      elif [ "$*" = directory ] && [ $((0$m & 022)) != 0 ]; then unsafe="$p is writable by group/other (owner $n, mode $m)"
      fi
    fi
    [ "$p" = / ] && return 0
    p=${p%/*}; p=${p:-/}
  done
}
trusted_path() {
  walk "$1"
  e=$1; while [ ! -e "$e" ] && [ "$e" != / ]; do e=${e%/*}; e=${e:-/}; done
  [ -n "$unsafe" ] || walk "$(cd -P -- "$e" 2>/dev/null && pwd -P || echo "$e")"
  [ -z "$unsafe" ] || echo "UNSAFE $unsafe"
  [ -z "$unsafe" ]
}"""


def lock_script(data_dir: str, owner: str, *, take_over: bool) -> str:
    """Take ``<data_dir>/.registry-tls.lock``: the owner file is written in a temporary folder renamed into
    place (``mv -T``), so nobody ever sees a lock without its owner (review L4). The owner line is
    ``<owner> <epoch>``; when held: ``LOCKED <age of the lock folder in s> <owner line>``.

    It is the first root write of a changing run, so it first checks that root may trust data_dir's path
    (TRUSTED_PATH_SH; refused: ``UNSAFE ...`` and exit UNSAFE_PATH, nothing written)."""
    lock = f"{data_dir}/.registry-tls.lock"
    return "\n".join([
        TRUSTED_PATH_SH,
        f"trusted_path {q(data_dir)} || exit {Exit.UNSAFE_PATH:d}",
        f"mkdir -p {q(data_dir)} && chmod go-w {q(data_dir)}",
        f"[ {int(take_over)} = 1 ] && rm -rf {q(lock)}",
        f"t=$(mktemp -d {q(lock)}.XXXXXXXX) || exit 1",
        f"echo {q(owner)} \"$(date -u +%s)\" > \"$t/owner\"",
        (f"if ! mv -T \"$t\" {q(lock)} 2>/dev/null; then rm -rf \"$t\"; "
         f"echo \"LOCKED $(( $(date -u +%s) - $(stat -c %Y {q(lock)} 2>/dev/null || date -u +%s) )) "
         f"$(cat {q(lock)}/owner 2>/dev/null)\"; exit {Exit.LOCKED:d}; fi"),
        "echo LOCK",
    ])


def unlock_script(data_dir: str) -> str:
    return f"rm -rf {q(data_dir + '/.registry-tls.lock')}"


def prepare_script(want: Desired) -> str:
    d = want.registry.data_dir
    return "\n".join([
        "set -e", "umask 077",
        f"mkdir -p {q(want.cert_dir)} {q(d + '/auth')} {q(d + '/storage')}",
        f"chmod 0700 {q(want.cert_dir)}",
        # keep the current htpasswd and env file for rollback (same folder: the rename back is atomic);
        # --remove-destination: a link planted at .previous is replaced, never followed (review L2)
        *(f"if [ -f {q(path)} ]; then cp -p --remove-destination {q(path)} {q(path + '.previous')}; "
          f"else rm -f {q(path + '.previous')}; fi" for path in (want.htpasswd_path, want.env_path)),
    ])


def switch_link_script(data_dir: str, target: str, *, legacy: bool) -> str:
    """Point ``certs`` at ``target`` with one rename(2); a plain seed folder is kept as .certs-legacy."""
    certs = f"{data_dir}/certs"
    lines = ["set -e"]
    if legacy:
        lines.append(f"if [ -d {q(certs)} ] && [ ! -L {q(certs)} ]; then "
                     f"rm -rf {q(data_dir + '/.certs-legacy')}; mv {q(certs)} {q(data_dir + '/.certs-legacy')}; fi")
    lines += [f"ln -sfn {q(target)} {q(certs + '.tmp')}", f"mv -T {q(certs + '.tmp')} {q(certs)}"]
    return "\n".join(lines)


def recreate_script(engine: str, spec: ContainerSpec, *, has_old: bool, migrate_from: str | None,
                    data_dir: str) -> str:
    """Stop the old container (kept as <name>-previous), carry images over, run the new one."""
    prev = f"{spec.name}-previous"
    lines = ["set -e"]
    if has_old:
        lines += [f"{q(engine)} rm -f {q(prev)} >/dev/null 2>&1 || true",
                  f"{q(engine)} rename {q(spec.name)} {q(prev)}",
                  f"{q(engine)} stop -t 10 {q(prev)} >/dev/null"]
    if migrate_from:
        lines.append(f"cp -a {q(migrate_from)}/. {q(data_dir + '/storage')}/")
    lines += [
        f"{spec.run_command(engine)} >/dev/null",
        # wait until running and stable (not crash-looping), at most 20 s
        "i=0; while [ $i -lt 100 ]; do",
        f"  s=$({q(engine)} inspect --format '{{{{.State.Running}}}} {{{{.RestartCount}}}}' {q(spec.name)})",
        '  case "$s" in "true 0") [ $i -ge 5 ] && { echo RUNNING; exit 0; };; "false "*|*" "[1-9]*) break;; esac',
        "  sleep 0.2; i=$((i+1))",
        "done",
        "echo EXITED",   # its output is read by keep_failed_script
        f"exit {Exit.CONTAINER_EXITED:d}",
    ]
    return "\n".join(lines)


def failed_name(container: str, when: float) -> str:
    return container + FAILED_INFIX + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))


STOP_TRIES = 30   # stops of a kept container that restarts by its own policy (keep_failed_script)


def keep_failed_script(engine: str, name: str, kept: str) -> str:
    """Keep the container that failed as ``kept`` (only the latest one), stopped and never restarted; print
    ``KEPT <name>``, ``STATE <status> <exit code>``, ``POLICY <its restart policy>`` (``REFUSED <why>`` before them
    when the engine would not set it to ``no``), ``OUTPUT`` and then its output. Nothing when it does not exist."""
    e = q(engine)
    return "\n".join([
        f"{e} inspect --type container {q(name)} >/dev/null 2>&1 || exit 0",
        # a daemon restart must not revive it; a container caught between restarts refuses `update`, so the
        # policy is set again once it is stopped, and a refusal then is reported (podman before 5.1 has no
        # `update --restart`)
        f"{e} update --restart=no {q(name)} >/dev/null 2>&1 || true",
        f"{e} stop -t 5 {q(name)} >/dev/null 2>&1 || true",
        (f"r=0; u=$({e} update --restart=no {q(name)} 2>&1 >/dev/null) || "
         "{ r=$?; echo \"REFUSED (exit $r) $(printf '%s\\n' \"$u\" | head -n 1)\"; }"),
        # the policy stays: podman before 4.6 restarts a crash-looping container after a `stop` that landed
        # between two of its runs (containers/podman#18259; one stop in four held on the lab's 4.3), and the
        # restarted one takes the previous registry's port. So: stopped again until it stays stopped (not
        # running, no new restart for 1 s), at most STOP_TRIES times
        (f"[ $r = 0 ] || {{ i=0; while [ $i -lt {STOP_TRIES} ]; do "
         f"c=$({e} inspect --format '{{{{.State.Running}}}} {{{{.RestartCount}}}}' {q(name)} 2>/dev/null); sleep 1; "
         f"[ \"$c\" = \"$({e} inspect --format '{{{{.State.Running}}}} {{{{.RestartCount}}}}' {q(name)} 2>/dev/null)\" ] "
         "&& case \"$c\" in true*) ;; *) break;; esac; "
         f"{e} stop -t 5 {q(name)} >/dev/null 2>&1 || true; i=$((i+1)); done; }}"),
        (f"for c in $({e} ps -a --format '{{{{.Names}}}}'); do case \"$c\" in {q(name + FAILED_INFIX)}*) "
         f"{e} rm -f \"$c\" >/dev/null;; esac; done"),
        f"k={q(name)}",
        f"{e} rename {q(name)} {q(kept)} && k={q(kept)} && echo \"KEPT $k\"",
        f"echo \"STATE $({e} inspect --format '{{{{.State.Status}}}} {{{{.State.ExitCode}}}}' \"$k\")\"",
        f"echo \"POLICY $({e} inspect --format '{{{{.HostConfig.RestartPolicy.Name}}}}' \"$k\")\"",
        "echo OUTPUT",
        f"{e} logs --tail {LOG_LINES} \"$k\" 2>&1",
        "true",
    ])


@dataclass(frozen=True)
class Kept:
    """What keep_failed_script printed."""

    name: str | None = None   # the kept container's name; None: the engine made no container
    state: str = ""           # 'status exit-code'
    policy: str = ""          # its restart policy once stopped: 'no' unless the engine refused to change it
    refused: str = ""         # the engine's words when it refused (`podman update` before 5.1 has no --restart)
    output: str = ""          # its last LOG_LINES lines of output


def parse_kept(stdout: str) -> Kept:
    """``Kept`` from keep_failed_script's output."""
    found: dict[str, str] = {}
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        tag, _, rest = line.partition(" ")
        if tag in ("KEPT", "STATE", "POLICY", "REFUSED"):
            found[tag.lower()] = rest.strip()
        elif line == "OUTPUT":
            found["output"] = "\n".join(lines[i + 1:])
            break
    return Kept(name=found.pop("kept", None), **found)


def restore_link_script(data_dir: str, old: str | None, *, legacy: bool) -> str | None:
    """Undo of a link switch: the seed's plain folder back, or ``certs`` -> ``old`` (None: nothing to restore)."""
    d = data_dir
    if legacy:
        return f"rm -f {q(d + '/certs')} && mv {q(d + '/.certs-legacy')} {q(d + '/certs')}"
    return switch_link_script(d, old, legacy=False).replace("set -e\n", "") if old else None


def restore_file_script(path: str, *, remove_if_none: bool) -> str:
    """Undo of a file write: the copy prepare_script kept as ``<path>.previous`` back (or, when there was
    none and ``remove_if_none``, no file)."""
    prev = q(path + ".previous")
    return (f"if [ -f {prev} ]; then mv -f {prev} {q(path)}; "
            + (f"else rm -f {q(path)}; fi" if remove_if_none else "fi"))


def restore_container_script(engine: str, name: str) -> str:
    """Undo of a re-create: the new container gone (removed here, or kept aside by keep_failed_script), the
    previous one back under its name and started."""
    e, prev = q(engine), q(name + "-previous")
    return "\n".join([
        f"{e} rm -f {q(name)} >/dev/null 2>&1 || true",
        (f"if {e} inspect --type container {prev} >/dev/null 2>&1; then "
         f"{e} rename {prev} {q(name)} && {e} start {q(name)} >/dev/null; fi"),
    ])


def rollback_script(applied: Iterable[Step]) -> str:
    """The undo of the steps applied, last first, except that the previous container comes back after the
    files: an engine resolves a bind mount's path when the container starts (a seed container mounts the
    ``certs`` path, which must be its own folder again by then)."""
    steps = tuple(applied)
    container = tuple(s for s in steps if s.kind is Kind.RECREATE)
    return undo_script(container + tuple(s for s in steps if s.kind is not Kind.RECREATE))   # reversed: files first


def cleanup_script(want: Desired) -> str:
    """After success (the new container serves ``want``'s certificate and passed the health check): drop
    <name>-previous and every other cert folder with its key, the seed's .certs-legacy too (review L12).
    Nothing goes back to them any more: a rollback happens before this, within the run, and
    ``inv rotate --abort`` uploads the old certificate again from <pki_dir>/previous/."""
    reg = want.registry
    return "\n".join([
        f"{q(reg.engine)} rm -f {q(reg.container + '-previous')} >/dev/null 2>&1 || true",
        f"rm -f {q(want.htpasswd_path + '.previous')} {q(want.env_path + '.previous')}",
        *([] if reg.env else [f"rm -f {q(want.env_path)}"]),   # registry.env emptied: no secrets left behind
        (f"cd {q(reg.data_dir)} && ls -1dt .certs-* 2>/dev/null | grep -v -x -e {q(want.cert_dir_name)} "
         "| xargs -r rm -rf"),
    ])
