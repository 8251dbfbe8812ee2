"""registry-tls: secure a private Docker registry with TLS across a fleet.

The package is the logic behind ``tasks.py``. Read it top-down:

- ``inventory``  inventory.yaml -> validated, resolved ``Inventory``  (pure)
- ``certs``      certificate building, linting, describing              (pure)
- ``pki``        the operator's local key material: load, generate, write 0600
- ``htpasswd``   bcrypt user file                                        (pure)
- ``transport``  the only module that speaks SSH (Fabric/paramiko); the ``Transport`` protocol
- ``session``    one run's context; ``Session.connect`` is the only way to a host
- ``sh``         the one way to build shell (every value quoted) and the scripts' exit codes
- ``facts``      read-only remote probes: scripts, pure parsers, one runner per host kind
- ``registry``   the registry host by layer: spec, plan, scripts, lock, apply
- ``clients``    desired state, plan and apply for Docker clients
- ``untrust``    what of ours is on a client, and its removal
- ``deploy``     orchestration: certificate -> registry -> clients
- ``verify``     TLS and /v2/ checks from the operator's machine; ``verify`` on the fleet
- ``rotate``     certificate rotation: local moves and the phases
- ``status``     read-only fleet picture with monitoring levels
- ``state``      local state: users, health credentials, last run, rotation record, lock
- ``metrics``    the status as Prometheus text exposition                (pure)
- ``export``     cloud-init user-data and a Kubernetes DaemonSet with the trust (pure)
- ``cli``        the ``registry-tls`` command: thin Invoke tasks
- ``fleet``      bounded parallel fan-out with per-host results
- ``results``    the data types every step returns
- ``report``     rendering of results: tables, progress, JSON
- ``lab``        a real multi-host fleet on this machine, for tests and demo
"""
