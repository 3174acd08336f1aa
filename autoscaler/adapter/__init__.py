"""Serves decisions to the HPA: the aggregated custom/external metrics API and the KEDA external scaler.

`metrics_api.create_app` / `metrics_api.serve` (aiohttp, HTTPS + requestheader auth) and
`keda_scaler.start_keda_scaler` (grpc.aio). Reads only the DecisionStore; imports core/ and spec/ only.
`keda_scaler` is not imported here because importing it compiles the KEDA proto on first use.
"""
