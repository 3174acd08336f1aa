"""tfserving-autoscaler: SLO-driven predictive autoscaling for TensorFlow Serving on Kubernetes."""

__version__ = "0.1.0"
