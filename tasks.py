"""`inv` in a checkout: the operator's tasks (fabfile/cli.py, installed as the `registry-tls` command)
plus the developer-only lab and demo, which need root and never ship to operators' task lists.

The operator's flags, exit codes and config are those of `registry-tls`; see fabfile/cli.py.
"""

from __future__ import annotations

from invoke import Exit

from fabfile import report
from fabfile.cli import collection
from fabfile.commandline import cli, task
from fabfile.lab.tasks import ns as lab_ns


@task(help={"root": "lab folder (default .lab)", "prefix": "lab name prefix (netns, bridge)",
            "subnet": "lab subnet (default 10.213.0.0/24)"})
@cli
def demo(c, root=".lab", prefix="rtls", subnet="10.213.0.0/24"):
    """Bring up the lab, deploy to it, push and pull an image through TLS, show the status."""
    from pathlib import Path

    from fabfile.lab import LabError
    from fabfile.lab import demo as demo_

    try:
        rep, result, timings = demo_.run(Path(root), prefix=prefix, subnet=subnet, say=report.line,
                                         progress=report.LiveProgress)
    except (LabError, RuntimeError) as exc:
        report.error(str(exc))
        raise Exit(code=1) from None
    report.summary(rep, "deploy")
    report.status_view(result)
    report.line(f"lab up {timings['lab_up']:.1f}s, deploy {timings['deploy']:.1f}s, push+pull {timings['push_pull']:.1f}s")
    report.line(f"try: INVOKE_INVENTORY={root}/inventory.yaml inv status    |    tear down: inv lab.down"
                + ("" if root == ".lab" else f" --root {root}"))
    raise Exit(code=int(max(rep.exit_code, result.level)))


ns = collection(demo, lab_ns)
