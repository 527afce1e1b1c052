"""Read the Nexar access token that nexar-token-operator keeps in a mounted Secret, and pick up
each renewal without a restart.

The kubelet updates a Secret volume atomically: every file is a symlink into a `..data`
directory that is replaced in one rename. So re-reading is cheap and safe: stat the file (which
follows the symlink) and read it again when its inode or mtime changed. Call `token()` before
each request (it stats at most once per `check_interval` seconds); after an HTTP 401, call
`token(force=True)` once and retry.

Standard library only (Python 3.9+). Run it to watch the mounted token:

    NEXAR_TOKEN_DIR=/var/run/secrets/nexar python3 nexar_token.py

It prints the token's expiry and a SHA-256 prefix whenever the token changes — never the token.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import urllib.request


class MountedToken:
    """The token in `<directory>/access_token`, re-read whenever the kubelet swaps the file."""

    def __init__(self, directory: str = "/var/run/secrets/nexar", check_interval: float = 5.0) -> None:
        self._path = os.path.join(directory, "access_token")
        self._expires_path = os.path.join(directory, "expires_at")
        self._check_interval = check_interval
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._token = ""
        self._expires_at = ""

    def token(self, force: bool = False) -> str:
        """The current token; re-reads the file if it changed (or if `force`)."""
        with self._lock:
            now = time.monotonic()
            if force or self._stamp is None or now - self._checked >= self._check_interval:
                self._checked = now
                st = os.stat(self._path)  # follows the ..data symlink: a swap means a new inode
                stamp = (st.st_ino, st.st_mtime_ns)
                if force or stamp != self._stamp:
                    with open(self._path, encoding="utf-8") as f:
                        self._token = f.read().strip()
                    try:
                        with open(self._expires_path, encoding="utf-8") as f:
                            self._expires_at = f.read().strip()
                    except FileNotFoundError:
                        self._expires_at = ""
                    self._stamp = stamp
            return self._token

    @property
    def expires_at(self) -> str:
        """RFC 3339 expiry of the current token ('' if the expires_at key is not mounted)."""
        self.token()
        return self._expires_at


def nexar_query(tokens: MountedToken, query: str) -> bytes:
    """POST a GraphQL query to the Nexar API, retrying once with a re-read token after a 401."""
    import json
    import urllib.error

    body = json.dumps({"query": query}).encode()
    for attempt in (0, 1):
        req = urllib.request.Request(
            "https://api.nexar.com/graphql",
            data=body,
            headers={"Authorization": f"Bearer {tokens.token(force=attempt == 1)}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                return res.read()
        except urllib.error.HTTPError as err:
            if err.code != 401 or attempt == 1:
                raise
    raise AssertionError("unreachable")


if __name__ == "__main__":
    tokens = MountedToken(os.environ.get("NEXAR_TOKEN_DIR", "/var/run/secrets/nexar"), check_interval=1.0)
    last = None
    while True:
        t = tokens.token()
        if t != last:
            digest = hashlib.sha256(t.encode()).hexdigest()[:12]
            print(f"token sha256:{digest}… expires_at={tokens.expires_at or 'unknown'}", flush=True)
            last = t
        time.sleep(float(os.environ.get("POLL_SECONDS", "5")))
