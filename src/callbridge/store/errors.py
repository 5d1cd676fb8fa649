"""The store's exceptions.

    CallbridgeError                     (callbridge.errors)
    └── StoreError                      the store refused an operation or could not open
        ├── SchemaError                 the schema cannot be migrated (e.g. it is newer)
        ├── UserExists                  a user's name, extension or number is taken
        ├── UserNotFound                no user has this name
        ├── TokenInvalid                a login token is unknown or was revoked
        ├── TokenExpired                a login token's lifetime is over
        └── CdrExists                   a CDR with this call id was already recorded

Bad input (an extension with letters, a number that is not E.164, …) raises ``ValueError``
with a message saying what is wrong; these errors are about the state of the database.
"""

from __future__ import annotations

from datetime import datetime

from callbridge.errors import CallbridgeError

__all__ = [
    "CdrExists",
    "SchemaError",
    "StoreError",
    "TokenExpired",
    "TokenInvalid",
    "UserExists",
    "UserNotFound",
]


class StoreError(CallbridgeError):
    """The store refused an operation or could not open the database."""


class SchemaError(StoreError):
    """The database's schema cannot be brought to the revision this code needs.

    Typically the database was written by a newer callbridge.
    """


class UserExists(StoreError):
    """The name, extension or number of a new user is taken.

    ``fields`` lists which of ``"name"``, ``"extension"`` and ``"number"`` collided.
    """

    def __init__(self, message: str, fields: tuple[str, ...]) -> None:
        super().__init__(message)
        self.fields = fields


class UserNotFound(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no user named {name!r}")
        self.name = name


class TokenInvalid(StoreError):
    def __init__(self) -> None:
        super().__init__("the token is unknown or was revoked")


class TokenExpired(StoreError):
    def __init__(self, expires_at: datetime) -> None:
        super().__init__(f"the token expired at {expires_at.isoformat(timespec='seconds')}")
        self.expires_at = expires_at


class CdrExists(StoreError):
    def __init__(self, call_id: str) -> None:
        super().__init__(f"a CDR for call {call_id!r} is already recorded")
        self.call_id = call_id
