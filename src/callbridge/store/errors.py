"""The store's exceptions.

    CallbridgeError                     (callbridge.errors)
    └── StoreError                      the store refused an operation or could not open
        ├── SchemaError                 the schema cannot be migrated (e.g. it is newer)
        ├── UserExists                  a user's name, extension or number is taken
        ├── NotFound (also LookupError) no such thing; ``key`` says what was looked for
        │   ├── UserNotFound            no user has this name
        │   ├── ApplicationNotFound     no call-control application has this id
        │   ├── RouteNotFound           no route for this destination
        │   ├── MediaNotFound           no (unexpired) media has this name
        │   └── RecordingNotFound       no recording has this id
        ├── TokenInvalid                a login token is unknown or was revoked
        │   └── TokenRevoked            ... it was revoked
        ├── TokenExpired                a login token's lifetime is over
        │   └── CredentialExpired       ... or its user's credential's
        ├── CdrExists                   a CDR with this call id was already recorded
        ├── MediaExists                 a media name is taken
        └── RecordingExists             a recording id is taken

The "not found" family shares a base so that an API layer can map it to 404 in one place.

Bad input (an extension with letters, a number that is not E.164, …) raises ``ValueError``
with a message saying what is wrong; these errors are about the state of the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from callbridge.errors import CallbridgeError

__all__ = [
    "ApplicationNotFound",
    "CdrExists",
    "CredentialExpired",
    "MediaExists",
    "MediaNotFound",
    "NotFound",
    "RecordingExists",
    "RecordingNotFound",
    "RouteNotFound",
    "SchemaError",
    "StoreError",
    "TokenExpired",
    "TokenInvalid",
    "TokenRevoked",
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


class NotFound(StoreError, LookupError):
    """Base of the "no such thing" errors: ``key`` is what was looked for."""

    what: ClassVar[str] = "thing"

    def __init__(self, key: str) -> None:
        super().__init__(f"no {self.what} {key!r}")
        self.key = key


class UserNotFound(NotFound):
    what = "user named"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class TokenInvalid(StoreError):
    def __init__(self) -> None:
        super().__init__("the token is unknown or was revoked")


class TokenExpired(StoreError):
    def __init__(self, expires_at: datetime) -> None:
        super().__init__(f"the token expired at {expires_at.isoformat(timespec='seconds')}")
        self.expires_at = expires_at


class TokenRevoked(TokenInvalid):
    """A login token that was revoked (issue 14): still ``invalid_token`` on the wire, with a
    message that says so, so that a client stops retrying it."""

    def __init__(self, revoked_at: datetime | None) -> None:
        StoreError.__init__(
            self,
            "the token was revoked"
            + ("" if revoked_at is None else f" at {revoked_at.isoformat(timespec='seconds')}")
            + ": ask your backend for a new one",
        )
        self.revoked_at = revoked_at


class CredentialExpired(TokenExpired):
    """The user's credential itself has expired (``expires_at`` of the telephony credential):
    every token of the user is refused, as ``token_expired``."""

    def __init__(self, name: str, expires_at: datetime) -> None:
        StoreError.__init__(
            self,
            f"user {name!r}'s credential expired at {expires_at.isoformat(timespec='seconds')}: "
            "the backend must extend it (PATCH /v2/telephony_credentials/{id} expires_at)",
        )
        self.expires_at = expires_at


class CdrExists(StoreError):
    def __init__(self, call_id: str) -> None:
        super().__init__(f"a CDR for call {call_id!r} is already recorded")
        self.call_id = call_id


class ApplicationNotFound(NotFound):
    what = "call-control application with id"


class RouteNotFound(NotFound):
    what = "route for destination"


class MediaNotFound(NotFound):
    what = "media named"


class RecordingNotFound(NotFound):
    what = "recording with id"


class MediaExists(StoreError):
    def __init__(self, media_name: str) -> None:
        super().__init__(f"media named {media_name!r} already exists")
        self.media_name = media_name


class RecordingExists(StoreError):
    def __init__(self, recording_id: str) -> None:
        super().__init__(f"a recording with id {recording_id!r} already exists")
        self.recording_id = recording_id
