"""Trust for machines the tool never reaches over SSH, handed to the engines that build them (pure).

- ``cloud_init``: ``#cloud-config`` user-data for a new machine of a client group: the files
  ``clients.trust`` would write for each certs.d-style target (``write_files``), and the OS store
  through cloud-init's own ``ca_certs`` module (it knows each distribution's store and refresh).
- ``kubernetes``: a ConfigMap + DaemonSet that keep the anchor and hosts.toml in each node's
  ``/etc/containerd/certs.d/<name>/`` (containerd reads them on every pull: no restart).

Both take their files from ``clients.desired_files``, so paths and contents are those of
``clients.trust``; both carry only certificates (public), never a key or a password.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

from . import clients as C
from .certs import fingerprint_pem
from .inventory import Client, KubernetesSection, Registry


def _yaml(*documents: dict) -> str:
    y = YAML()
    y.default_flow_style = False
    y.width = 4096
    out = io.StringIO()
    y.dump_all(documents, out) if len(documents) > 1 else y.dump(documents[0], out)
    return out.getvalue()


def _text(data: bytes) -> LiteralScalarString:
    return LiteralScalarString(data.decode())


# --------------------------------------------------------------------------- cloud-init


def cloud_init(client: Client, registry: Registry, anchors: tuple[C.Anchor, ...], *, title: str) -> str:
    """User-data giving a new machine with ``client``'s settings the registry's trust."""
    files = C.desired_files(client, registry, anchors, None)  # the OS store goes through ca_certs
    config: dict = {}
    if files:
        config["write_files"] = [{"path": f.path, "owner": "root:root", "permissions": "0644",
                                  "content": _text(f.content)} for f in files]
    if "buildkit" in client.trust:  # buildkitd ignores certs.d; our marked block, appended
        config.setdefault("write_files", []).append({
            "path": C.BUILDKIT_TOML, "owner": "root:root", "permissions": "0644", "append": True,
            "content": _text(C.buildkit_toml(None, registry, anchors))})
    if "os" in client.trust:
        config["ca_certs"] = {"trusted": [_text(a.pem) for a in anchors]}
    return f"#cloud-config\n# {title}\n" + (_yaml(config) if config else "{}\n")


# --------------------------------------------------------------------------- kubernetes


HOST_ROOT = "/host"
CONFIG_ROOT = "/config"

# Runs in the DaemonSet's container: ConfigMap key 'd<i>.<file>' -> /host/d<i>/<file>, where /host/d<i>
# is the hostPath /etc/containerd/certs.d/<folder i>. Writes only what differs (temp file + rename),
# removes only our stale registry-tls-*.crt, leaves every other file alone, and repeats.
SYNC_SCRIPT = r"""set -u
sync_once() {
  ok=0
  for src in "$SRC"/*; do
    key=${src##*/}
    dst="$DST/${key%%.*}/${key#*.}"
    cmp -s "$src" "$dst" && continue
    tmp="${dst%/*}/.registry-tls.$$.${dst##*/}"
    if cp "$src" "$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$dst"; then
      echo "registry-tls: wrote $dst"
    else
      rm -f "$tmp"; echo "registry-tls: could not write $dst" >&2; ok=1
    fi
  done
  for dst in "$DST"/*/registry-tls-*.crt; do
    [ -e "$dst" ] || continue
    dir=${dst%/*}
    [ -e "$SRC/${dir##*/}.${dst##*/}" ] && continue
    if rm -f "$dst"; then echo "registry-tls: removed $dst"; else ok=1; fi
  done
  return $ok
}
while :; do
  sync_once; rc=$?
  [ -z "${ONCE:-}" ] || exit $rc
  sleep "${INTERVAL:-60}"
done
"""


def k8s_name(registry: Registry) -> str:
    """``registry-tls-<host>[-<port>]`` as a DNS label (names, labels and volume names accept it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", registry.endpoint.lower()).strip("-")
    return f"registry-tls-{slug}"[:63].rstrip("-")


def containerd_files(client: Client, registry: Registry, anchors: tuple[C.Anchor, ...]
                     ) -> tuple[dict[str, str], dict[str, bytes]]:
    """(volume -> host folder, ConfigMap key -> content): clients.trust's containerd files, by folder."""
    files = C.desired_files(replace(client, trust=("containerd",)), registry, anchors, None)
    folders: dict[str, str] = {}
    data: dict[str, bytes] = {}
    for f in files:
        folder, name = f.path.rsplit("/", 1)
        volume = folders.setdefault(folder, f"d{len(folders)}")
        data[f"{volume}.{name}"] = f.content
    return {v: folder for folder, v in folders.items()}, data


def kubernetes(client: Client, registry: Registry, anchors: tuple[C.Anchor, ...], k8s: KubernetesSection,
               *, title: str) -> str:
    """A ConfigMap with the files and a DaemonSet that keeps them in each node's containerd certs.d."""
    if not k8s.image:
        raise ValueError("kubernetes.image is not set")
    name = k8s_name(registry)
    volumes, data = containerd_files(client, registry, anchors)
    labels = {"app.kubernetes.io/name": "registry-tls", "app.kubernetes.io/instance": name}
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": k8s.namespace, "labels": dict(labels)},
        "data": {key: _text(content) for key, content in sorted(data.items())},
    }
    pod = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"operator": "Exists"}],  # every node pulls, control plane included
        "securityContext": {"runAsUser": 0, "runAsGroup": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 5,
        "containers": [{
            "name": "keep-anchor",
            "image": k8s.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", LiteralScalarString(SYNC_SCRIPT)],
            "env": [{"name": "SRC", "value": CONFIG_ROOT}, {"name": "DST", "value": HOST_ROOT},
                    {"name": "INTERVAL", "value": "60"}],
            "resources": {"requests": {"cpu": "1m", "memory": "8Mi"},
                          "limits": {"cpu": "50m", "memory": "32Mi"}},
            "securityContext": {"privileged": False, "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "config", "mountPath": CONFIG_ROOT, "readOnly": True}]
                            + [{"name": v, "mountPath": f"{HOST_ROOT}/{v}"} for v in volumes],
        }],
        "volumes": [{"name": "config", "configMap": {"name": name}}]
                   + [{"name": v, "hostPath": {"path": folder, "type": "DirectoryOrCreate"}}
                      for v, folder in volumes.items()],
    }
    daemon_set = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": k8s.namespace, "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                # a new anchor changes the pod template, so `kubectl apply` rolls the DaemonSet too
                "metadata": {"labels": dict(labels), "annotations": {
                    "registry-tls/anchor-sha256": ",".join(fingerprint_pem(a.pem) for a in anchors)}},
                "spec": pod,
            },
        },
    }
    return f"# {title}\n" + _yaml(config_map, daemon_set)
