"""The order comment that carries an actionId, exactly as the EA writes it (``mql5/README.md``)::

      "hb" + tag(actionId) + tag(positionId)        26 characters (MT5 keeps 31)
      tag(s) = first 12 characters of base64url(SHA-256(UTF-8 of s)); "------------" when s is empty

so the EA and the bridge recognise each other's orders on one account.
"""

from __future__ import annotations

import base64
import hashlib

COMMENT_PREFIX = "hb"
TAG_LENGTH = 12
NO_TAG = "-" * TAG_LENGTH
COMMENT_LENGTH = len(COMMENT_PREFIX) + 2 * TAG_LENGTH


def tag(text: str) -> str:
    """The first 12 characters of base64url(SHA-256(UTF-8 of ``text``)); ``NO_TAG`` for an empty text."""
    if not text:
        return NO_TAG
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())[:TAG_LENGTH].decode()


def order_comment(action_id: str | None, position_id: str) -> str:
    """The comment of every order the bridge sends (the EA's format)."""
    return COMMENT_PREFIX + tag(action_id or "") + tag(position_id)


def is_own_comment(comment: str) -> bool:
    """Whether ``comment`` was written by ``order_comment`` (by the bridge or by the EA)."""
    return len(comment) >= COMMENT_LENGTH and comment.startswith(COMMENT_PREFIX)


def position_tag(comment: str) -> str | None:
    """The positionId tag inside an own comment, None for any other comment."""
    if not is_own_comment(comment):
        return None
    start = len(COMMENT_PREFIX) + TAG_LENGTH
    return comment[start : start + TAG_LENGTH]


def carries_action(comment: str, action_id: str) -> bool:
    """Whether ``comment`` belongs to an order sent for ``action_id``."""
    return bool(action_id) and comment.startswith(COMMENT_PREFIX + tag(action_id))
