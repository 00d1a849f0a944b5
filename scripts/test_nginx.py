"""Install Debian's nginx for the reverse-proxy test (tests/commands/test_behind_nginx.py).

    python scripts/test_nginx.py ensure   # apt-get install nginx if missing and root
    python scripts/test_nginx.py path     # print the executable the test starts

The test starts its own nginx (its own prefix, config, ports and pid file, never the
system's service) with examples/nginx/consortia.conf. A machine without nginx that cannot
install it gets a message: outside CI the test then skips with that reason and this exits
0; in CI (CI=true) it is an error. Installing does not start the system's nginx where
policy-rc.d forbids it (containers); elsewhere it is the distribution's default.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from debian_packages import apt_install, unavailable


def nginx_path() -> Path | None:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    return Path(found) if found else None


def _install() -> None:
    apt_install("nginx")


def _unavailable(reason: str) -> int:
    return unavailable("nginx", reason, "the reverse-proxy test")


def ensure() -> int:
    if nginx_path() is None:
        if os.geteuid() != 0:
            return _unavailable("nginx is missing and this is not root: cannot apt-get it")
        try:
            _install()
        except (OSError, subprocess.CalledProcessError) as error:
            return _unavailable(f"apt-get install nginx failed ({error})")
        if nginx_path() is None:
            return _unavailable("apt-get installed nginx but it is not on the PATH")
    print(f"nginx: {nginx_path()}")
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "ensure"
    if command == "ensure":
        return ensure()
    if command == "path":
        path = nginx_path()
        if path is None:
            return _unavailable("not installed")
        print(path)
        return 0
    raise SystemExit(f"unknown command {command!r}; use ensure or path")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
