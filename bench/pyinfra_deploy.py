"""The job of `inv clients.trust`, written the way a pyinfra user would (bench/README.md).

Host data comes from the inventory the bench driver writes (bench/work/pyinfra/inventory.py):
    certs_d_dirs     the certs.d folders our tool writes (fabfile/clients.py certs_d_dirs)
    ca_file          the registry's anchor certificate on this machine
    tls_checks       the TLS checks our tool does with dockerd stopped (fabfile/runtimes.py): one
                     openssl command per endpoint the client pulls from, with that name's ca.crt
Like ours (and unlike the ansible playbook's handler), no dockerd restart: Docker reads certs.d
on every pull.
"""
from pyinfra import host
from pyinfra.operations import files, server

for folder in host.data.certs_d_dirs:
    files.directory(name=f"certs.d folder {folder}", path=folder, user="root", group="root", mode="755",
                    _sudo=True)
    files.put(name=f"registry anchor {folder}/ca.crt", src=host.data.ca_file, dest=f"{folder}/ca.crt",
              user="root", group="root", mode="644", _sudo=True)

server.shell(
    name="TLS handshake with the installed trust, each endpoint",
    commands=[f"{check} </dev/null >/dev/null 2>&1" for check in host.data.tls_checks],
    _sudo=True,
)
