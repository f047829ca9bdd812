"""Docker HEALTHCHECK: exit 0 if GET /healthz on HEALTH_PORT answers 200, else 1.

The slim image has no curl; this needs only the standard library. HEALTH_PORT=0 turns the
endpoint off, and then there is nothing to check: healthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """Probe the health endpoint once; print one line saying why when it fails."""
    port = os.environ.get("HEALTH_PORT", "8080").strip() or "8080"
    if port == "0":
        return 0
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"healthz answered {exc.code}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthz unreachable: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
