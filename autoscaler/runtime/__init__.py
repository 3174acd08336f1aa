"""The daemon: clock, control loop, leader election, spec watcher, telemetry, app and demo.

Import the submodules directly (`autoscaler.runtime.loop`, `.app`, ...); this package file stays
empty so importing one piece does not pull in the Kubernetes client or statsmodels.
"""
