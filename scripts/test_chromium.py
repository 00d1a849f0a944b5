"""Install Debian's Chromium and a Chinese font for the real-browser page tests
(tests/web/test_browser_*.py).

    python scripts/test_chromium.py ensure   # apt-get install chromium if missing and root
    python scripts/test_chromium.py path     # print the executable the tests launch

The tests drive /usr/bin/chromium through the ``playwright`` package with
``executable_path``; ``playwright install`` (which downloads a browser build of its own)
is never used. A machine without Chromium that cannot install it (not root, or apt-get
failed) gets a message: outside CI the browser tests then skip with that reason and this
exits 0; in CI (CI=true) it is an error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from debian_packages import apt_install, unavailable

CHROMIUM = Path("/usr/bin/chromium")
#: a font with Chinese glyphs, so the Chinese pages (and their screenshots) show characters,
#: not boxes: WenQuanYi Zen Hei, Debian's fonts-wqy-zenhei (GPL with font exception)
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
CJK_PACKAGE = "fonts-wqy-zenhei"


def _present() -> bool:
    return CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)


def _install() -> None:
    apt_install("chromium")


def _unavailable(reason: str) -> int:
    return unavailable("chromium", reason, "the browser tests")


def ensure() -> int:
    if not _present():
        if os.geteuid() != 0:
            return _unavailable(f"{CHROMIUM} is missing and this is not root: cannot apt-get it")
        try:
            _install()
        except (OSError, subprocess.CalledProcessError) as error:
            return _unavailable(f"apt-get install chromium failed ({error})")
        if not _present():
            return _unavailable(f"apt-get installed chromium but {CHROMIUM} is still missing")
    if not CJK_FONT.is_file():
        if os.geteuid() != 0:
            return _unavailable(f"{CJK_FONT} is missing and this is not root: cannot apt-get it")
        try:
            apt_install(CJK_PACKAGE)
        except (OSError, subprocess.CalledProcessError) as error:
            return _unavailable(f"apt-get install {CJK_PACKAGE} failed ({error})")
    # only for the log: whether it really runs is the browser tests' business
    try:
        version = subprocess.run(
            [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        version = f"{CHROMIUM} (--version failed: {error})"
    print(f"chromium: {version or CHROMIUM}")
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "ensure"
    if command == "ensure":
        return ensure()
    if command == "path":
        print(CHROMIUM)
        return 0
    raise SystemExit(f"unknown command {command!r}; use ensure or path")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
