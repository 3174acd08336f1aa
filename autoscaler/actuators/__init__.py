"""Actuation: turning a Decision into changes on Kubernetes (scale, batching rollout, Events).

The only package besides `runtime/` that imports the official `kubernetes` client. Import the
submodules directly (`autoscaler.actuators.base`, `.kube`, ...); this package file stays empty so
`import autoscaler.actuators.base` does not pay for the Kubernetes client.
"""
