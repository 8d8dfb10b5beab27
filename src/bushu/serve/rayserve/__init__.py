"""`bushu serve --ray`: each model a Ray Serve deployment behind bushu's own HTTP front.

- `local`: starting or joining Ray without a byte leaving 127.0.0.0/8 on a local instance.
- `replica`: the deployment: one model's versions in a replica, answered by a `DataPlane`.
- `front`: the plane the HTTP routes call in the front process, which hands work to replicas.
"""
