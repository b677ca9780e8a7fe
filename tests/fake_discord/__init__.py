"""A local fake Discord (REST, gateway websocket, CDN on 127.0.0.1) that an unmodified discord.py client logs in to.

Usage is documented in README.md next to this file.
"""

from .cdn import CdnFault, FakeAttachment
from .errors import CommandNotPermitted, InvalidInvocation, NotConnected
from .faults import FaultRule
from .interactions import Callback, FakeInteraction
from .messages import FakeMessage, MessageVersion
from .rest import RecordedRequest
from .server import FakeDiscord
from .world import FakeChannel, FakeGuild, FakeUser

__all__ = [
    "Callback",
    "CdnFault",
    "CommandNotPermitted",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMessage",
    "FakeUser",
    "FaultRule",
    "InvalidInvocation",
    "MessageVersion",
    "NotConnected",
    "RecordedRequest",
]
