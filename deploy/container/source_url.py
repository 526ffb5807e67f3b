"""The image's org.opencontainers.image.source label from the repository's git remote:
where the source can be fetched, and nothing else. A remote URL may carry credentials
(https://user:token@host/...), and a label is readable by anyone who can pull the image,
so userinfo, query and fragment are dropped; a local path (meaningless elsewhere, and it
can name a user) gives "unknown".

    python3 deploy/container/source_url.py "$(git config --get remote.origin.url)"
"""

from __future__ import annotations

import re
import sys
from urllib.parse import urlsplit, urlunsplit

UNKNOWN = "unknown"
# git's scp-like syntax: [user@]host:path (no scheme, a colon before any slash).
SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>(?!//)[^\s]+)$")
REMOTE_SCHEMES = {"https", "http", "ssh", "git"}


def public_source_url(remote: str) -> str:
    remote = remote.strip()
    if not remote:
        return UNKNOWN
    if "://" not in remote:
        scp = SCP_LIKE.match(remote)
        if scp is None:
            return UNKNOWN  # a local path
        return f"ssh://{scp['host']}/{scp['path'].lstrip('/')}"
    try:
        parts = urlsplit(remote)
        host, port = parts.hostname, parts.port
    except ValueError:
        return UNKNOWN
    if parts.scheme not in REMOTE_SCHEMES or not host:
        return UNKNOWN
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


if __name__ == "__main__":
    print(public_source_url(sys.argv[1] if len(sys.argv) > 1 else ""))
