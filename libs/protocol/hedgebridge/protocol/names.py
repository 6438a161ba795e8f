"""The rules for the names every part of the system shares: account ids, actionIds, user ids and token ids.

One place, used by the message types (``messages``), the NATS subjects (``subjects``), the token checks
(``hedgebridge.common.auth``) and every service that validates a name, so that a name accepted in one place
is accepted everywhere and one refused anywhere is refused at the door:

- an **account id** is a NATS subject token and a KV key part: 1-64 of ``A-Z a-z 0-9 _ -`` (no ``*``, ``>``,
  ``.`` or spaces, which would change what a subject matches);
- an **actionId** is a subject token and a KV key: 1-128 of the same alphabet;
- a **symbol** is 1-32 of ``A-Z a-z 0-9 . _ # + -``; a symbol map's prefix or suffix is 0-16 of the same;
- a **user id** is free text up to 128 characters (compared exactly, never part of a subject); the name of a
  user in a token's scope is not empty;
- a **token id** (a JWT's ``jti``) is a key of the revocation bucket: 1-128 of ``A-Z a-z 0-9 _ = -`` in parts
  joined by single dots (what a JetStream KV key accepts; no empty part).

Patterns end with ``\\Z``, not ``$``: ``$`` also matches before a final newline, and ``"A1\\n"`` is not an
account id.
"""

from __future__ import annotations

import re

ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}\Z"
ACTION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}\Z"
USER_ID_MAX = 128
TOKEN_ID_PATTERN = r"^(?=.{1,128}\Z)[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*\Z"
SYMBOL_PATTERN = r"^[A-Za-z0-9._#+-]{1,32}\Z"
AFFIX_PATTERN = r"^[A-Za-z0-9._#+-]{0,16}\Z"
SCOPE_MAX = 10_000  # the most accounts (or users) a token's scope or a SUBSCRIBE may name

_ACCOUNT_ID = re.compile(ACCOUNT_ID_PATTERN)
_ACTION_ID = re.compile(ACTION_ID_PATTERN)
_TOKEN_ID = re.compile(TOKEN_ID_PATTERN)
_SYMBOL = re.compile(SYMBOL_PATTERN)


def is_account_id(value: object) -> bool:
    return isinstance(value, str) and _ACCOUNT_ID.match(value) is not None


def is_action_id(value: object) -> bool:
    return isinstance(value, str) and _ACTION_ID.match(value) is not None


def is_symbol(value: object) -> bool:
    return isinstance(value, str) and _SYMBOL.match(value) is not None


def is_user_name(value: object) -> bool:
    """A user named in a token (its ``sub`` outside the ``ea`` role, or an entry of ``users``)."""
    return isinstance(value, str) and 0 < len(value) <= USER_ID_MAX


def is_token_id(value: object) -> bool:
    return isinstance(value, str) and _TOKEN_ID.match(value) is not None
