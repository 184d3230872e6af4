"""Clone URLs and the credentials they may carry (``https://user:token@host/...``).

Credentials are write-only: the URL a stack keeps (and shows, and puts in every execution input and
build request) is ``https://***@host/...``; the user info is kept in the secret store and put back
into the URL only by the build worker, when it starts a build.
"""

from __future__ import annotations

import re

from .text import CONTROL

MAX_CLONE_URL = 2048
STORED = "***"
# https://anything, http:// to this machine (local mirrors), file:///path, /path; never control characters.
CLONE_URL = (
    rf"https://[^{CONTROL}]+"
    rf"|http://(?:[^/?#@{CONTROL}]+@)?(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{{1,5}})?(?:[/?#][^{CONTROL}]*)?"
    rf"|file:///[^{CONTROL}]*"
    rf"|/[^{CONTROL}]*"
)
CLONE_URL_RULE = (
    "must be an https:// URL, an http:// URL of 127.0.0.1 or localhost, a file:/// URL or an absolute path,"
    " without control characters"
)
_USERINFO = re.compile(r"^(?P<scheme>https?://)(?P<userinfo>[^/?#@]+)@")


def split(url: str) -> tuple[str, str | None]:
    """``(url with its user info replaced by ***, the user info)``; the URL and None if it has none."""
    match = _USERINFO.match(url)
    if match is None:
        return url, None
    return f"{match.group('scheme')}{STORED}@{url[match.end() :]}", match.group("userinfo")


def has_stored_credentials(url: str) -> bool:
    """``url`` is the public form of a URL whose credentials are in the secret store."""
    match = _USERINFO.match(url)
    return match is not None and match.group("userinfo") == STORED


def with_credentials(public_url: str, userinfo: str) -> str:
    """The URL to clone: the stored user info put back in place of ``***``."""
    match = _USERINFO.match(public_url)
    if match is None or match.group("userinfo") != STORED:
        return public_url
    return f"{match.group('scheme')}{userinfo}@{public_url[match.end() :]}"


def without_userinfo(url: str) -> str:
    """``url`` with no user info at all (``https://host/...``)."""
    match = _USERINFO.match(url)
    return url if match is None else f"{match.group('scheme')}{url[match.end() :]}"


def redact(url: str) -> str:
    """``url`` with any user info shown as ``***`` (for logs and messages)."""
    return split(url)[0]
