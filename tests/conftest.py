"""Settings for the whole suite.

Hypothesis explores new examples on every local run. CI loads the ``ci`` profile
(``HYPOTHESIS_PROFILE=ci``, set by ``.ci/run``): examples derived from each test's name, so a
failure in CI fails the same way on every rerun and on a developer's machine with the same
profile, and the failing example is printed for ``@reproduce_failure``.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
