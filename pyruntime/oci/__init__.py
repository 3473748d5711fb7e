"""Layer 1, the OCI runtime: config.json model and validation, container lifecycle
(create/start/state/kill/delete/exec/run), the container's init, and the state store.
It knows nothing of pods; the pod layer drives it through `pyruntime.oci.runtime.Runtime`.
"""
