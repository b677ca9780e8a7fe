"""Discord-shaped error responses, and the exceptions the control API raises at test authors."""

from __future__ import annotations

from aiohttp import web

# JSON error codes Discord uses for the cases the fake reproduces.
UNKNOWN_CHANNEL = 10003
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
UNAUTHORIZED = 40001
REQUEST_TOO_LARGE = 40005
ALREADY_ACKNOWLEDGED = 40060
MISSING_PERMISSIONS = 50013
INVALID_WEBHOOK_TOKEN = 50027
INVALID_FORM_BODY = 50035


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response with the exact ``Content-Type: application/json`` discord.py checks for."""
    response = web.json_response(data, status=status, headers=headers)
    response.content_type = "application/json"
    response.charset = None
    return response


def discord_error(status: int, code: int, message: str, errors: dict | None = None) -> web.Response:
    body: dict = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return json_response(body, status=status)


class RestError(Exception):
    """Raised by a route handler to answer with a Discord error."""

    def __init__(self, status: int, code: int, message: str, errors: dict | None = None) -> None:
        super().__init__(f"{status} {message} (code {code})")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def response(self) -> web.Response:
        return discord_error(self.status, self.code, self.message, self.errors)


class InvalidInvocation(ValueError):
    """A test asked for something the real Discord client would not let a user do (unknown command, bad option...)."""


class CommandNotPermitted(InvalidInvocation):
    """The user lacks the command's default_member_permissions, so Discord would not offer or deliver it."""


class NotConnected(RuntimeError):
    """No bot session is connected to the fake gateway, so an event cannot be delivered."""
