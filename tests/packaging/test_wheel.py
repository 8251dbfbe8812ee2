"""The `registry-tls` command as an operator gets it: the wheel built from this checkout, installed
into a fresh virtualenv, run from an empty folder (no tasks.py, no checkout on sys.path).

The fresh venv borrows the *dependencies* (fabric, cryptography, ...) from the test interpreter through
a .pth line, so the test needs no network; the product itself comes only from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INVENTORY = "registry: {host: registry.example}\ncertificate: {san: [DNS:registry.example], key_type: ecdsa-p256}\n"


def _run(*argv, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "PYTHON"))}
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**base, **(env or {})}, check=False)
    if check:
        assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv holding the wheel built from this checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: setuptools writes build/ and *.egg-info into the tree it builds
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__",
                                                                 "tests", "bench", "pki"))
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", tmp / "dist", source, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("registry_tls-*.whl")
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    site = Path(_run(venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                     cwd=tmp).stdout.strip())
    (site / "_deps_from_test_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(sys.executable, "-m", "pip", "--python", venv / "bin/python", "install", "-q", "--no-deps", "--no-index",
         wheel, cwd=tmp)
    where = _run(venv / "bin/python", "-c", "import fabfile; print(fabfile.__file__)", cwd=tmp).stdout
    assert where.startswith(str(site)), where  # the product comes from the wheel, not the checkout
    return venv / "bin"


@pytest.fixture
def empty(tmp_path) -> Path:
    folder = tmp_path / "anywhere"
    folder.mkdir()
    return folder


def test_list_shows_the_operator_tasks_and_not_the_lab(installed, empty):
    out = _run(installed / "registry-tls", "--list", cwd=empty).stdout
    for name in ("deploy", "verify", "status", "rotate", "cert.generate", "registry.deploy", "clients.trust",
                 "users.add"):
        assert f"  {name} " in out, out
    assert "lab." not in out and "demo" not in out, out


def test_the_wheel_holds_the_tool_and_not_the_test_lab(installed, empty):
    """fabfile.lab (root-only namespaces, `inv demo`) is a facility of this checkout, not of the product."""
    (wheel,) = (installed.parents[1] / "dist").glob("registry_tls-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fabfile/cli.py" in names and "fabfile/registry/apply.py" in names, names
    assert not [n for n in names if n.startswith("fabfile/lab/")], names
    found = _run(installed / "python", "-c", "import importlib.util as u; print(u.find_spec('fabfile.lab'))",
                 cwd=empty).stdout
    assert found.strip() == "None", found


def test_version_is_the_package_version(installed, empty):
    out = _run(installed / "registry-tls", "--version", cwd=empty).stdout
    assert out.strip() == f"registry-tls {_project_version()}"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_names_the_command(installed, empty, shell):
    out = _run(installed / "registry-tls", "--print-completion-script", shell, cwd=empty).stdout
    assert "registry-tls" in out and "--complete" in out, out
    done = _run(installed / "registry-tls", "--complete", "--", "registry-tls", "cert.", cwd=empty).stdout.split()
    assert {"cert.generate", "cert.show"} <= set(done), done


def test_a_local_task_runs_from_an_empty_folder(installed, empty):
    (empty / "inventory.yaml").write_text(INVENTORY)
    _run(installed / "registry-tls", "cert.generate", cwd=empty)
    key = empty / "pki/registry.key"
    assert key.stat().st_mode & 0o777 == 0o600
    shown = json.loads(_run(installed / "registry-tls", "cert.show", "--json", cwd=empty).stdout)
    assert "DNS:registry.example" in json.dumps(shown)


def test_the_inventory_comes_from_invokes_config_like_inv(installed, empty, tmp_path):
    (tmp_path / "elsewhere.yaml").write_text(INVENTORY)
    _run(installed / "registry-tls", "cert.generate", cwd=empty, env={"INVOKE_INVENTORY": str(tmp_path / "elsewhere.yaml")})
    assert (tmp_path / "pki/registry.crt").is_file()
    assert list(empty.iterdir()) == []


def test_the_invoke_yaml_of_the_current_folder_is_read_like_inv_reads_the_projects(installed, empty):
    (empty / "site").mkdir()
    (empty / "site/fleet.yaml").write_text(INVENTORY)
    (empty / "invoke.yaml").write_text("inventory: site/fleet.yaml\n")
    _run(installed / "registry-tls", "cert.generate", cwd=empty)
    assert (empty / "site/pki/registry.crt").is_file()


def test_bad_input_is_one_line_and_exit_2(installed, empty):
    proc = _run(installed / "registry-tls", "deploy", cwd=empty, check=False)
    assert proc.returncode == 2 and "inventory.yaml" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def _project_version() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_every_library_the_installed_code_imports_is_a_declared_dependency(installed, empty):
    """The fresh venv borrows the test env's packages, so a missing entry in pyproject's dependencies would
    go unnoticed above: every top-level module the installed fabfile/ imports (read with ast, so imports
    inside functions count too) must come from the stdlib or a distribution the wheel's Requires-Dist names."""
    script = r"""
import ast, importlib.metadata as md, json, pathlib, re, sys
import fabfile
root = pathlib.Path(fabfile.__file__).parent
names = set()
for path in root.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
third = sorted(n for n in names - set(sys.stdlib_module_names) - {"fabfile", "__future__"})
dists = md.packages_distributions()
requires = {re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0].lower().replace("_", "-")
            for r in md.requires("registry-tls") or [] if "extra ==" not in r}
print(json.dumps({n: [d.lower().replace("_", "-") for d in dists.get(n, [])] for n in third}))
print(json.dumps(sorted(requires)))
"""
    imports_line, requires_line = _run(installed / "python", "-c", script, cwd=empty).stdout.splitlines()
    imports, requires = json.loads(imports_line), set(json.loads(requires_line))
    assert {"fabric", "cryptography", "rich"} <= set(imports), imports   # the check reads real imports
    undeclared = {name: dists for name, dists in imports.items() if not set(dists) & requires}
    assert undeclared == {}, f"imported but not in [project] dependencies: {undeclared}; declared: {sorted(requires)}"
