"""The controller step around `core.decide()`, shared by the daemon, the simulator and the demo.

One object per target (`PredictiveController`) owns everything between an observation and the
decision that is actuated: feeding the forecaster, the forecast horizon (from the lead time
`decide()` actually uses), the warm start, the frozen `State`, the hold on invalid decisions and
the rollback of a batching change that did not reach the pods. The daemon (`runtime/loop.py`) and
the simulator's predictive policies (`sim/policies/predictive.py`) call the same methods, so what
the simulator scores is what the daemon runs.
"""

from autoscaler.control.controller import ForecastLike, PredictiveController

__all__ = ["ForecastLike", "PredictiveController"]
