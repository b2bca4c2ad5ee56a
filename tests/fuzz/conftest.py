"""Hypothesis profiles of the fuzz tests: ``hato-ci`` (the default) is small and derandomized so
that ``make test`` stays quick and repeatable; ``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, what
``make fuzz`` sets) runs many more examples (``HATO_FUZZ_EXAMPLES``, 5,000 by default) from
random seeds, and keeps what failed in .hypothesis/ to try first next time."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "hato-ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("HATO_FUZZ_EXAMPLES", "5000")),
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "hato-ci")
settings.load_profile(PROFILE)
