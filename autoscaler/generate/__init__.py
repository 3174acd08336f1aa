"""Generated deployment artifacts: the CRD, the Grafana dashboard and the Prometheus rules.

Built from the code they describe (spec schema, telemetry metric names) so manifests never
drift from the daemon; `tfserving-autoscaler generate` rewrites them and a test checks that
the committed files equal the generated ones.
"""
