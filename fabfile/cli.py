"""The operator's tasks, shipped as the ``registry-tls`` command (Invoke's Program API).

`registry-tls --list` shows them, `registry-tls --help TASK` explains one. In a
checkout, ``tasks.py`` re-exports this collection for ``inv`` and adds the lab.

Each task only parses flags, calls fabfile, renders the result and sets the
exit code: 0 all ok, 1 some hosts failed or were unreachable, 2 invalid input
(nothing touched), 130 interrupted; ``status``: 0/1/2/3 monitoring codes
(flags, exit codes and error lines: fabfile/commandline.py). The inventory comes from --inventory, else the Invoke
config key ``inventory`` (so INVOKE_INVENTORY=path works), else ./inventory.yaml.
"""

from __future__ import annotations

import getpass
import sys
from importlib import metadata
from pathlib import Path

from invoke import Collection, Exit, Program

from . import deploy as D
from . import logs, report
from . import rotate as ROT
from . import verify as V
from .commandline import Config, cli, exit_2_on_parse_errors, integer, parse_exit_code, task
from .errors import ExitCode, InputError, RegistryTlsError
from .inventory import pin_warning
from .program import command
from .session import open_session

exit_2_on_parse_errors()  # Invoke's own parse errors: one line, exit 2 (status 3), for inv and registry-tls

COMMON = {
    "inventory": "inventory file (default: config 'inventory' / INVOKE_INVENTORY, else ./inventory.yaml)",
    "verbose": "show each remote command (secrets masked)",
    "accept_new_host_keys": "trust and record host keys not yet in known_hosts (first contact only)",
    "json": "print one JSON object on stdout instead of tables",
    "dry_run": "show what would change; change nothing",
}
FLEET = {
    "hosts": "only these clients (comma-separated names)",
    "groups": "only clients in these groups (comma-separated)",
    "parallel": "clients handled at the same time (default 10)",
    "batch": "dockerd restarts allowed at the same time (default 1)",
    "force": "restart dockerd even when containers would stop",
    "failed_only": "only the clients that failed or were unreachable last run",
}


def _session(c, inventory, *, verbose=False, accept_new_host_keys=False, json=False, command=""):
    path = inventory or c.config.get("inventory") or "inventory.yaml"
    for key, value in (("inventory", path), ("sudo.password", c.config.sudo.password)):
        if value is not None and not isinstance(value, str):   # from a configuration file Invoke loaded as is
            raise InputError(f"Invoke configuration {key}: expected text, not {value!r}")
    session = open_session(
        path, sudo_password=c.config.sudo.password, accept_new_host_keys=accept_new_host_keys,
        progress=lambda title, total: report.LiveProgress(title, total, enabled=not json),
    )
    logs.setup(session.inv.state_dir, verbose=verbose, command=command or " ".join(sys.argv))
    ROT.load(session)  # a corrupt rotation state stops every task here, before any host is asked
    session.state.former_registry_hosts()  # so does a corrupt list of the registry's names (status: UNKNOWN)
    return session


def _finish(s, rep, *, json: bool, title: str, command: str, dry_run: bool = False, save: bool = True):
    if save and not dry_run:
        s.state.save_run(command, rep)
    if json:
        report.print_json(rep.to_json())
    else:
        report.summary(rep, title, dry_run=dry_run)
    if rep.exit_code != ExitCode.OK:
        raise Exit(code=int(rep.exit_code))


# --------------------------------------------------------------------------- cert


@task(help={"inventory": COMMON["inventory"], "force": "replace an existing certificate and key",
            "new_ca": "ca mode: also make a new CA (clients must then trust it again)"})
@cli
def generate(c, inventory=None, force=False, new_ca=False):
    """Generate the registry certificate and key locally (key 0600, never uploaded unasked)."""
    s = _session(c, inventory, command="cert.generate")
    material = s.pki.generate(s.now, force=force, new_ca=new_ca)
    report.line(f"wrote {s.pki.cert_path} and {s.pki.key_path} (0600)")
    for warning in s.pki.warnings:
        report.note(f"warning: {warning}")
    report.cert_details(D.describe(material.leaf), s.now, "certificate")


@task(help={"inventory": COMMON["inventory"], "json": COMMON["json"]})
@cli
def show(c, inventory=None, json=False):
    """Show the local certificate: subject, SANs, validity, days left, SHA-256, key type."""
    s = _session(c, inventory, json=json, command="cert.show")
    infos = D.show_certificate(s)
    if json:
        report.print_json({"certificates": [i.as_dict(s.now) for i in infos]})
        return
    for i, info in enumerate(infos):
        report.cert_details(info, s.now, str(s.pki.cert_path) + ("" if i == 0 else f" (chain #{i})"))


# --------------------------------------------------------------------------- registry


@task(help={**{k: COMMON[k] for k in ("inventory", "verbose", "accept_new_host_keys", "json", "dry_run")},
            "renew": "issue a new certificate when the current one no longer fits the inventory",
            "break_lock": "take over a registry lock left by a run that died"})
@cli
def registry_deploy(c, inventory=None, dry_run=False, renew=False, break_lock=False, json=False,
                    verbose=False, accept_new_host_keys=False):
    """Push cert, key and users to the registry host and (re-)run the container; verify; roll back on failure."""
    s = _session(c, inventory, verbose=verbose, accept_new_host_keys=accept_new_host_keys, json=json)
    with s.state.lock():
        material, message = D.certificate(s, renew=renew, dry_run=dry_run)
        rep = D.deploy_registry(s, material, dry_run=dry_run, break_lock=break_lock)
    rep.notes.insert(0, f"certificate: {message}")
    _finish(s, rep, json=json, title="registry", command="registry.deploy", dry_run=dry_run)


# --------------------------------------------------------------------------- users


PASSWORD_MAX = 72  # bcrypt uses the first 72 bytes; check_password says so


def _read_password(name: str) -> str:
    """From a prompt (twice), or exactly one line of stdin: more lines, or a CR, are errors."""
    if sys.stdin.isatty():
        try:
            first = getpass.getpass(f"password for {name}: ")
            if getpass.getpass("again: ") != first:
                raise InputError("the two passwords differ")
        except EOFError:   # Ctrl-D: end the prompt's line, then one line of error
            sys.stderr.write("\n")
            raise InputError(f"no password given for {name}") from None
        return first
    bound = 4 * PASSWORD_MAX + 2   # 72 characters of 4 bytes and a newline, with room to tell "more"
    data = sys.stdin.buffer.read(bound + 1)
    if len(data) > bound:
        raise InputError(f"password on stdin: longer than {bound} bytes; bcrypt uses only the first "
                         f"{PASSWORD_MAX}, give {PASSWORD_MAX} bytes or fewer")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("password on stdin: not UTF-8 text") from None
    text = text.removesuffix("\n")
    if "\n" in text:
        raise InputError("password on stdin: more than one line; give exactly one line")
    if "\r" in text:
        raise InputError("password on stdin: contains a carriage return (a Windows line ending?); "
                         "give one line ending in \\n only")
    return text


def _material_for_push(s):
    """The certificate the registry serves, checked before anything is asked or written."""
    if s.pki.load() is None:
        raise InputError(f"{s.pki.cert_path}: no certificate yet, so no registry to push users to; "
                         f"run {command('deploy')} first, or pass --no-deploy")
    material, _ = D.certificate(s)  # existing material: never writes; an unfit one is an InputError
    return material


@task(help={"inventory": COMMON["inventory"], "update": "change the password of an existing user",
            "no_deploy": "only update the local htpasswd; push it with the next deploy",
            "verbose": COMMON["verbose"], "accept_new_host_keys": COMMON["accept_new_host_keys"]})
@cli
def add(c, name, inventory=None, update=False, no_deploy=False, verbose=False, accept_new_host_keys=False):
    """Add a registry user; the password is read from a prompt or stdin, never from the command line.

    The local htpasswd changes only together with a successful push to the registry (or with --no-deploy).
    """
    from .htpasswd import check_operator_user, hash_password

    s = _session(c, inventory, verbose=verbose, accept_new_host_keys=accept_new_host_keys)
    check_operator_user(name)
    table = s.state.htpasswd()
    if name in table and not update:
        raise InputError(f"user {name!r} exists in {s.state.htpasswd_path}; pass --update to change its password")
    material = None if no_deploy else _material_for_push(s)
    hashed = hash_password(_read_password(name), s.inv.registry.bcrypt_cost)
    _change_users(s, lambda t: t.with_hash(name, hashed), material,
                  f"{'updated' if name in table else 'added'} {name} in {s.state.htpasswd_path}")


@task(help={"inventory": COMMON["inventory"], "no_deploy": "only update the local htpasswd",
            "verbose": COMMON["verbose"], "accept_new_host_keys": COMMON["accept_new_host_keys"]})
@cli
def remove(c, name, inventory=None, no_deploy=False, verbose=False, accept_new_host_keys=False):
    """Remove a registry user (locally only together with a successful push, or with --no-deploy)."""
    from .htpasswd import refuse_reserved

    s = _session(c, inventory, verbose=verbose, accept_new_host_keys=accept_new_host_keys)
    refuse_reserved(name)
    table = s.state.htpasswd()
    if name not in table:
        raise InputError(f"no user {name!r} in {s.state.htpasswd_path}")
    material = None if no_deploy else _material_for_push(s)
    _change_users(s, lambda t: t.without(name), material, f"removed {name} from {s.state.htpasswd_path}")


def _change_users(s, edit, material, done: str) -> None:
    """Apply ``edit`` to the local htpasswd: at once without ``material`` (--no-deploy), else only if the push works."""
    with s.state.lock():
        if material is None:
            s.state.save_htpasswd(edit(s.state.htpasswd()))
        else:
            with s.state.htpasswd_edit(edit):
                rep = D.deploy_registry(s, material)
                report.summary(rep, "registry")
                if rep.exit_code != ExitCode.OK:
                    report.note(f"{s.state.htpasswd_path} is unchanged: a users change is kept only with a "
                                "successful push (or --no-deploy)")
                    raise Exit(code=int(rep.exit_code))
    report.line(done)


@task(help={"inventory": COMMON["inventory"], "json": COMMON["json"]})
@cli
def list_(c, inventory=None, json=False):
    """List registry users (names only) and flag entries the registry would ignore."""
    s = _session(c, inventory, json=json)
    table = s.state.htpasswd()
    ignored, weak = table.not_bcrypt(), table.weak()
    if json:
        report.print_json({"users": list(table.users), "not_bcrypt": list(ignored), "weak": list(weak)})
        return
    for user in table.users:
        flag = " (not bcrypt: the registry ignores it)" if user in ignored else " (bcrypt cost < 10)" if user in weak else ""
        report.line(f"{user}{flag}")


# --------------------------------------------------------------------------- clients


@task(help={**{k: COMMON[k] for k in ("inventory", "verbose", "accept_new_host_keys", "json", "dry_run")}, **FLEET})
@cli
def trust(c, inventory=None, hosts=None, groups=None, parallel=10, batch=1, force=False, failed_only=False,
          dry_run=False, json=False, verbose=False, accept_new_host_keys=False):
    """Install the registry's trust on every client (in parallel); restart dockerd only when needed."""
    parallel, batch = integer(parallel, "parallel"), integer(batch, "batch")
    s = _session(c, inventory, verbose=verbose, accept_new_host_keys=accept_new_host_keys, json=json)
    targets = D.select_clients(s, hosts=hosts, groups=groups, failed_only=failed_only)
    material = s.pki.load()
    if material is None:
        raise InputError(f"{s.pki.cert_path}: no certificate yet; run {command('deploy')} or {command('cert.generate')}")
    with s.state.lock():
        rep = D.trust_clients(s, material, targets, dry_run=dry_run, force=force,
                              parallel=parallel, batch=batch)
    _finish(s, rep, json=json, title="clients", command="clients.trust", dry_run=dry_run)


@task(help={**{k: COMMON[k] for k in ("inventory", "verbose", "accept_new_host_keys", "json", "dry_run")},
            **{k: FLEET[k] for k in ("hosts", "groups", "parallel", "batch", "force", "failed_only")}})
@cli
def untrust(c, inventory=None, hosts=None, groups=None, parallel=10, batch=1, force=False, failed_only=False,
            dry_run=False, json=False, verbose=False, accept_new_host_keys=False):
    """Remove what clients.trust installed (every target; others' files stay); restart dockerd by the same rule."""
    from .untrust import untrust as step

    parallel, batch = integer(parallel, "parallel"), integer(batch, "batch")
    s = _session(c, inventory, verbose=verbose, accept_new_host_keys=accept_new_host_keys, json=json)
    targets = D.select_clients(s, hosts=hosts, groups=groups, failed_only=failed_only)
    material = s.pki.load()
    if material is None:
        raise InputError(f"{s.pki.cert_path}: no certificate: untrust compares the clients' files with it")
    with s.state.lock():
        rep = D.trust_clients(s, material, targets, dry_run=dry_run, force=force, parallel=parallel,
                              batch=batch, step=step)
    _finish(s, rep, json=json, title="clients", command="clients.untrust", dry_run=dry_run)


# --------------------------------------------------------------------------- whole job


@task(help={**{k: COMMON[k] for k in ("inventory", "verbose", "accept_new_host_keys", "json", "dry_run")}, **FLEET,
            "renew": "issue a new certificate when the current one no longer fits the inventory",
            "break_lock": "take over a registry lock left by a run that died"})
@cli
def deploy(c, inventory=None, hosts=None, groups=None, parallel=10, batch=1, force=False, failed_only=False,
           renew=False, dry_run=False, break_lock=False, json=False, verbose=False, accept_new_host_keys=False):
    """The whole job: certificate -> registry host -> every client -> verify."""
    parallel, batch = integer(parallel, "parallel"), integer(batch, "batch")
    s = _session(c, inventory, verbose=verbose, accept_new_host_keys=accept_new_host_keys, json=json)
    targets = D.select_clients(s, hosts=hosts, groups=groups, failed_only=failed_only)
    with s.state.lock():
        rep = D.deploy_all(s, targets, renew=renew, dry_run=dry_run, force=force, parallel=parallel,
                           batch=batch, break_lock=break_lock)
    _finish(s, rep, json=json, title="deploy", command="deploy", dry_run=dry_run)


@task(help={**{k: COMMON[k] for k in ("inventory", "verbose", "accept_new_host_keys", "json")},
            "hosts": FLEET["hosts"], "groups": FLEET["groups"], "parallel": FLEET["parallel"]})
@cli
def verify(c, inventory=None, hosts=None, groups=None, parallel=10, json=False, verbose=False,
           accept_new_host_keys=False):
    """Check the registry from here (as the seed does with openssl s_client) and each client through its runtimes."""
    parallel = integer(parallel, "parallel")
    s = _session(c, inventory, verbose=verbose, accept_new_host_keys=accept_new_host_keys, json=json)
    rep = V.verify_all(s, D.select_clients(s, hosts=hosts, groups=groups), parallel=parallel)
    _finish(s, rep, json=json, title="verify", command="verify", save=False)


@task(help={**{k: COMMON[k] for k in ("inventory", "verbose", "accept_new_host_keys", "json", "dry_run")},
            **{k: FLEET[k] for k in ("parallel", "batch", "force")},
            "if_expiring_within": "do nothing (exit 0) while the certificate has more than DAYS left",
            "if_due": "do nothing (exit 0) until certificate.renew_before_days are left (default: a third of days)",
            "abort": "return to the old certificate everywhere",
            "ca": "new anchor: a new CA (after a registry name change, or to move a self-signed deployment to "
                  "ca mode); clients learn it with the overlap phases",
            "until": lambda: f"stop after this phase: 'trusted' or 'switched' (resume later with {command('rotate')})"})
@cli
def rotate(c, inventory=None, if_expiring_within=None, if_due=False, dry_run=False, force=False, abort=False,
           ca=False, until=None, parallel=10, batch=1, json=False, verbose=False, accept_new_host_keys=False):
    """Rotate the certificate with no window of distrust; resumable; safe to run from cron daily."""
    if until not in (None, "trusted", "switched"):
        raise InputError(f"--until {until!r}: expected 'trusted' or 'switched'")
    if if_due and if_expiring_within is not None:
        raise InputError("--if-due and --if-expiring-within: give one of them")
    parallel, batch = integer(parallel, "parallel"), integer(batch, "batch")
    if_expiring_within = integer(if_expiring_within, "if_expiring_within", minimum=0, maximum=3650)
    s = _session(c, inventory, verbose=verbose, accept_new_host_keys=accept_new_host_keys, json=json)
    if if_due:
        if_expiring_within = s.inv.certificate.renew_before_days
    with s.state.lock():
        rep = ROT.rotate_all(s, s.inv.clients, dry_run=dry_run, force=force, abort=abort, renew_ca=ca, until=until,
                             if_expiring_within=if_expiring_within, parallel=parallel, batch=batch)
    if not rep.results:  # nothing touched (not expiring, dry run): one line
        if json:
            report.print_json(rep.to_json())
        else:
            for line in rep.notes:
                report.line(line)
        return
    _finish(s, rep, json=json, title="rotate", command="rotate", dry_run=dry_run)


@task(help={**{k: COMMON[k] for k in ("inventory", "verbose", "accept_new_host_keys", "json")},
            "hosts": FLEET["hosts"], "groups": FLEET["groups"], "parallel": FLEET["parallel"],
            "warn_days": "warn when the certificate expires within this many days (default 30)",
            "format": "table (default), json, or prometheus (text exposition format)",
            "metrics_file": "also write the metrics atomically to PATH (*.prom, for node_exporter's textfile "
                            "collector), even when the check fails"}, monitoring=True)
@cli(monitoring=True)
def status(c, inventory=None, hosts=None, groups=None, parallel=10, warn_days=30, json=False, verbose=False,
           accept_new_host_keys=False, format="table", metrics_file=None):
    """The fleet at a glance; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (for monitoring)."""
    import datetime as dt

    from .status import Level, fleet_status

    fmt = "json" if json else format
    problem = (f"--format {format!r}: expected one of {', '.join(FORMATS)}" if fmt not in FORMATS else
               _metrics_file_problem(metrics_file))
    if problem:
        report.error(problem)
        raise Exit(code=int(Level.UNKNOWN))
    result, registry, failure = None, "", None
    try:
        parallel = integer(parallel, "parallel")
        warn_days = integer(warn_days, "warn_days", minimum=0, maximum=3650)
        s = _session(c, inventory, verbose=verbose, accept_new_host_keys=accept_new_host_keys, json=fmt != "table")
        registry, checked_at = s.inv.registry.host, s.now
        result = fleet_status(s, D.select_clients(s, hosts=hosts, groups=groups), warn_days=warn_days,
                              parallel=parallel)
    except RegistryTlsError as exc:
        failure, checked_at = str(exc), dt.datetime.now(dt.UTC)
    if fmt == "prometheus" or metrics_file:
        _metrics(result, registry, checked_at, fmt == "prometheus", metrics_file)
    if failure is not None:
        report.error(failure)
        raise Exit(code=int(Level.UNKNOWN))
    assert result is not None  # set unless the session or the check failed
    if fmt == "json":
        report.print_json(result.to_json())
    elif fmt == "table":
        report.status_view(result)
    raise Exit(code=int(result.level))


FORMATS = ("table", "json", "prometheus")


def _metrics_file_problem(metrics_file: str | None) -> str | None:
    """Why --metrics-file cannot be written, before the check runs. A missing folder is refused, not made:
    it is node_exporter's --collector.textfile.directory, which must exist and be readable by node_exporter."""
    if metrics_file is None:
        return None
    path = Path(metrics_file)
    if not path.name.endswith(".prom"):
        return f"--metrics-file {metrics_file}: node_exporter's textfile collector reads only *.prom files"
    if not path.parent.is_dir():
        return (f"--metrics-file {metrics_file}: no folder {path.parent}; create node_exporter's textfile "
                "directory first (mode 0755)")
    return None


def _metrics(result, registry: str, checked_at, show: bool, path) -> None:
    from .localfs import atomic_write
    from .metrics import exposition

    data = exposition(result, registry=registry, checked_at=checked_at)
    if path:
        try:
            atomic_write(Path(path), data, mode=0o644)
        except InputError as exc:  # names the file and why (a folder that is a file, not writable)
            report.error(f"--metrics-file: {exc}")
            raise Exit(code=3) from None
    if show:
        report.print_text(data.decode())


# --------------------------------------------------------------------------- exports


def _export_inputs(c, inventory, group, *, kubernetes=False):
    s = _session(c, inventory, json=True, command="export")
    client = s.inv.group(group)
    if kubernetes and not s.inv.kubernetes.image:
        raise InputError(f"{s.inv.path}: kubernetes.image: not set; name a pinned image with sh, cmp, cp and mv "
                         "(e.g. busybox:1.36.1) that every node can pull")
    material = s.pki.load()
    if material is None:
        raise InputError(f"{s.pki.cert_path}: no certificate yet; run {command('deploy')} or {command('cert.generate')} first")
    anchors = s.anchors(material)
    title = (f"registry-tls: trust for {s.inv.registry.endpoint}"
             f" ({'group ' + group if group else 'client defaults'}), anchor SHA-256 {material.anchor_fingerprint}")
    return s, client, anchors, title


@task(help={"inventory": COMMON["inventory"],
            "group": "the client group whose trust targets new machines get (default: clients.defaults)"})
@cli
def cloud_init(c, inventory=None, group=None):
    """Print #cloud-config user-data giving a new machine the trust clients.trust would install."""
    from .export import cloud_init as render

    s, client, anchors, title = _export_inputs(c, inventory, group)
    report.print_text(render(client, s.inv.registry, anchors, title=title))


@task(help={"inventory": COMMON["inventory"],
            "group": "the client group whose registry names the nodes use (default: clients.defaults)"})
@cli
def kubernetes(c, inventory=None, group=None):
    """Print a ConfigMap + DaemonSet keeping the anchor in every node's /etc/containerd/certs.d (kubectl apply -f -)."""
    from .export import kubernetes as render

    s, client, anchors, title = _export_inputs(c, inventory, group, kubernetes=True)
    warning = pin_warning("kubernetes.image", s.inv.kubernetes.image or "")
    if warning:   # stderr: the manifest on stdout stays as kubectl reads it
        report.note(f"warning: {warning}")
    report.print_text(render(client, s.inv.registry, anchors, s.inv.kubernetes, title=title))


# --------------------------------------------------------------------------- namespaces

cert = Collection("cert", generate, show)
registry_ns = Collection("registry")
registry_ns.add_task(registry_deploy, name="deploy")
users = Collection("users", add, remove)
users.add_task(list_, name="list")
clients_ns = Collection("clients", trust, untrust)
export = Collection("export", cloud_init, kubernetes)


def collection(*extra) -> Collection:
    """The operator's tasks (plus ``extra`` tasks or collections: the checkout adds the lab)."""
    ns = Collection(deploy, verify, status, rotate, cert, registry_ns, users, clients_ns, export, *extra)
    ns.configure({"inventory": None})
    return ns


ns = collection()


def _version() -> str:
    try:
        return metadata.version("registry-tls")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class CliProgram(Program):
    """Invoke's Program, reading the project config as ``inv`` does from the folder of tasks.py: here from the
    folder it runs in (where the operator keeps inventory.yaml), ./invoke.yaml, .yml or .json. Not
    ./invoke.py: running the command in a folder must not run code found there."""

    def parse_collection(self) -> None:
        super().parse_collection()
        here = Path.cwd()
        found = next((here / f"invoke.{ext}" for ext in ("yaml", "yml", "json") if (here / f"invoke.{ext}").is_file()),
                     None)
        if found is None:
            return
        self.config.set_project_location(str(here))
        try:
            self.config.load_project()
        except Exception as exc:  # noqa: BLE001 - YAML/JSON errors, a file that is not a mapping: one line
            task_ = self.core.unparsed[0] if self.core.unparsed else None  # status: 3 UNKNOWN, else 2
            if isinstance(exc, RegistryTlsError):   # commandline.Config names the file, the line or the key
                raise Exit(f"error: {report.literal(exc)}", code=parse_exit_code(self, task_)) from None
            why = "expected a mapping of settings" if isinstance(exc, AttributeError) else " ".join(str(exc).split())
            raise Exit(f"error: {found}: not a usable Invoke config file: {report.literal(why)}",
                       code=parse_exit_code(self, task_)) from None


program = CliProgram(namespace=ns, version=_version(), name="registry-tls", binary="registry-tls",
                     binary_names=["registry-tls"], config_class=Config)
