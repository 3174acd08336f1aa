"""The ServingAutoscaler spec: frozen types for the core, YAML parsing/validation at the edge."""

from autoscaler.spec.parse import SpecError, load_spec, load_specs, parse_spec, parse_specs_text
from autoscaler.spec.schema import openapi_schema
from autoscaler.spec.types import ServingAutoscalerSpec

__all__ = [
    "ServingAutoscalerSpec",
    "SpecError",
    "load_spec",
    "load_specs",
    "openapi_schema",
    "parse_spec",
    "parse_specs_text",
]
