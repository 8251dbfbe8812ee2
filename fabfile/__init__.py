"""registry-tls: secure a private Docker registry with TLS across a fleet.

The package is the logic behind ``tasks.py``. Read it top-down:

- ``inventory``  inventory.yaml -> validated, resolved ``Inventory``  (pure)
- ``certs``      certificate building, linting, describing              (pure)
- ``pki``        the operator's local key material: load, generate, write 0600
- ``htpasswd``   bcrypt user file                                        (pure)
- ``transport``  the only module that speaks SSH (Fabric/paramiko)
- ``facts``      read-only remote probes: a command plus a pure parser
- ``registry``   desired state, plan and apply for the registry host
- ``clients``    desired state, plan and apply for Docker clients
- ``untrust``    what of ours is on a client, and its removal
- ``verify``     TLS and /v2/ checks from the operator's machine
- ``metrics``    the status as Prometheus text exposition                (pure)
- ``export``     cloud-init user-data and a Kubernetes DaemonSet with the trust (pure)
- ``cli``        the ``registry-tls`` command: thin Invoke tasks
- ``fleet``      bounded parallel fan-out with per-host results
- ``results``    the data types every step returns
- ``report``     rendering of results: tables, progress, JSON
- ``lab``        a real multi-host fleet on this machine, for tests and demo
"""
