"""How many examples a property-based test tries.

`make test` tries the number each test names. `make check`, the inner loop run on every
edit, sets HYPOTHESIS_PROFILE=check and tries a tenth of it (at least MIN_EXAMPLES), so
lint and the whole unit suite answer in about a minute; the examples are derandomised in
both, so a failure in either reproduces.
"""

from __future__ import annotations

import os

PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
CHECK_PROFILE = "check"
CHECK_FRACTION = 10
MIN_EXAMPLES = 10


def quick() -> bool:
    return os.environ.get(PROFILE_VARIABLE) == CHECK_PROFILE


def examples(count: int) -> int:
    """`count` in the full run; a tenth of it under `make check`."""
    return max(count // CHECK_FRACTION, MIN_EXAMPLES) if quick() else count
