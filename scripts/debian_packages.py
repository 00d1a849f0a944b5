"""What the test set-up scripts share: install one Debian package, and say what its absence
means (an error in CI, where the tests need it; a skip elsewhere).

    from debian_packages import apt_install, unavailable
"""

from __future__ import annotations

import os
import subprocess
import sys

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def apt_install(package: str) -> None:
    """``apt-get install`` one package, without recommends and without questions."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
        check=True,
        env=env,
    )


def unavailable(tool: str, reason: str, needed_for: str) -> int:
    """Report a missing tool: exit status 1 in CI, which needs it; 0 elsewhere, where the
    tests that need it skip and say why."""
    if IN_CI:
        print(f"{tool}: {reason}; CI needs it for {needed_for}", file=sys.stderr)
        return 1
    print(f"{tool}: {reason}; {needed_for} will skip (CI installs it)")
    return 0
