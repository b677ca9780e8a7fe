"""Posting and editing a job's messages, and delivering its final answer exactly once.

A job's status message is posted through its interaction's webhook (application id +
token), not through the :class:`discord.Interaction` object, so the same code serves a job
accepted a second ago and one resumed after a restart.  Interaction tokens live 15 minutes;
after that the bot keeps editing the status message with its own token (the message is its
own), so progress never freezes on a slow host.  The final answer is edited into the status
message, and the requester is pinged with a short reply, since an edit notifies nobody.
Without a status message (it was deleted, or never posted), the answer is posted to the
channel as a new message that mentions the requester.

Exactly once: before sending the final answer the store records "sending" and how (edit
or channel message).  Editing the status message is naturally idempotent.  For a channel
message, a restart that finds "sending" first looks for the message in the channel, and
the message carries a nonce that Discord deduplicates, so a crash between sending and
recording does not produce a second answer.  The ping is at most once: it follows a fresh
edit and carries its own nonce.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import discord

from bot.config import DeliveryConfig
from bot.jobs import JobRecord
from bot.render import FINAL_TITLES, Outgoing, job_footer
from bot.store import JobStore

log = logging.getLogger("bot.delivery")

T = TypeVar("T")

# How far back in a channel a restarted bot looks for a final message it may already have sent.
_HISTORY_LIMIT = 50


# Discord's answers to a dead interaction token: 401 Invalid Webhook Token, 404 Unknown Webhook.
_DEAD_TOKEN_CODES = frozenset({50027, 10015})


def _token_refused(exc: discord.HTTPException) -> bool:
    """Whether Discord refused the interaction token itself (rather than the message or its content)."""
    return exc.status == 401 or exc.code in _DEAD_TOKEN_CODES


def ping_nonce(record: JobRecord) -> str:
    """The nonce of the reply that notifies the requester: the job's own, told apart by its first character."""
    return "p" + record.nonce[1:]


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


class DeliveryFailed(Exception):
    """The final answer could not be delivered, and retrying will not help."""


async def with_retries(action: Callable[[], Awaitable[T]], *, config: DeliveryConfig, what: str) -> T:
    """Run ``action`` (one discord.py call) at most ``config.attempts`` times; raise DeliveryFailed when done.

    The policy, end to end: each attempt is one discord.py call, which itself repeats a request
    on a 5xx (up to 5 times) and sleeps through a 429 shorter than ``max_rate_limit_wait_s``;
    longer ones raise :class:`discord.RateLimited` (the client is built with
    ``max_ratelimit_timeout``).  Each attempt is cut off after ``attempt_timeout_s`` (webhook
    calls sleep through any 429, however long).  So one delivery makes at most
    ``attempts`` x 5 requests and waits at most ``max_rate_limit_wait_s`` between two.  A
    limit longer than that is not waited out here: the answer stays pending and the periodic
    sweep tries again.  Anything else Discord refuses (4xx) is raised at once.
    """
    for attempt in range(1, config.attempts + 1):
        backoff = min(config.backoff_s * 2 ** (attempt - 1), config.max_rate_limit_wait_s)
        try:
            async with asyncio.timeout(config.attempt_timeout_s):
                return await action()
        except discord.RateLimited as exc:
            raise DeliveryFailed(f"{what} is rate limited for {exc.retry_after:.0f} s; leaving it for later") from None
        except discord.DiscordServerError:
            delay = backoff
        except discord.HTTPException as exc:
            if exc.status != 429:
                raise
            # A 429 discord.py did not handle: from a proxy, or without Discord's headers.
            delay = _retry_after(exc, backoff)
            if delay > config.max_rate_limit_wait_s:
                raise DeliveryFailed(f"{what} is rate limited for {delay:.0f} s; leaving it for later") from None
        except (aiohttp.ClientError, TimeoutError, OSError):
            delay = backoff
        if attempt == config.attempts:
            break
        log.warning("%s failed (attempt %d of %d); retrying in %.1f s", what, attempt, config.attempts, delay)
        await asyncio.sleep(delay)
    raise DeliveryFailed(f"{what} still failing after {config.attempts} attempts")


def _retry_after(exc: discord.HTTPException, default: float) -> float:
    header = exc.response.headers.get("Retry-After") if exc.response is not None else None
    try:
        return float(header) if header is not None else default
    except ValueError:
        return default


class Delivery:
    """Sends a job's status updates (best effort) and its final answer (exactly once)."""

    def __init__(self, client: discord.Client, store: JobStore, config: DeliveryConfig) -> None:
        self._client = client
        self._store = store
        self._config = config

    def _webhook(self, record: JobRecord) -> discord.Webhook:
        return discord.Webhook.partial(record.application_id, record.interaction_token, client=self._client)

    def server_upload_limit(self, record: JobRecord) -> int:
        """The largest upload the bot may post in the job's server (Discord's default when not cached)."""
        guild = self._client.get_guild(record.guild_id) if record.guild_id else None
        return guild.filesize_limit if guild is not None else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    def token_valid(self, record: JobRecord) -> bool:
        return record.token_valid(time.time(), self._config.token_margin_s)

    async def post_status(self, record: JobRecord, message: Outgoing) -> int | None:
        """Post the public status message of a new job; return its id, or None if that failed.

        Through the interaction's webhook while its token is valid, else (a job resumed long
        after it was asked for) as the bot's own channel message.
        """
        try:
            sent_id = None
            if self.token_valid(record):
                try:
                    sent_id = await with_retries(
                        lambda: self._post_by_webhook(record, message),
                        config=self._config,
                        what=f"posting the status of job {record.id}",
                    )
                except discord.HTTPException as exc:
                    if not _token_refused(exc):
                        raise
                    self._token_died(record)
            if sent_id is None:
                sent_id = await with_retries(
                    lambda: self._send_to_channel(record, message),
                    config=self._config,
                    what=f"posting the status of job {record.id} to its channel",
                )
        except (discord.HTTPException, DeliveryFailed) as exc:
            log.warning("could not post the status of job %s: %s", record.id, exc)
            return None
        await self._store.set_status_message(record.id, sent_id)
        record.status_message_id = sent_id
        return sent_id

    async def _post_by_webhook(self, record: JobRecord, message: Outgoing) -> int:
        sent = await self._webhook(record).send(
            embed=message.embed,
            files=message.discord_files(),
            view=message.view or discord.utils.MISSING,
            allowed_mentions=message.allowed_mentions,
            wait=True,
        )
        return sent.id

    async def edit_status(self, record: JobRecord, message: Outgoing) -> bool:
        """Edit the status message in place (progress, queue position); best effort, no retries."""
        if record.status_message_id is None:
            return False
        try:
            async with asyncio.timeout(self._config.attempt_timeout_s):
                await self._edit(record, message)
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("could not update the status of job %s: %s", record.id, exc)
            return False
        return True

    def _token_died(self, record: JobRecord) -> None:
        """Discord refused the interaction token before its expected end: use the bot's own token from now on."""
        log.info("the interaction token of job %s no longer works; using the bot's own token", record.id)
        record.token_expires_at = min(record.token_expires_at, time.time() - self._config.token_margin_s)

    def _channel(self, record: JobRecord) -> discord.PartialMessageable:
        return self._client.get_partial_messageable(record.channel_id, guild_id=record.guild_id)

    async def _edit(self, record: JobRecord, message: Outgoing) -> int:
        """Edit the status message: through the webhook while the token lasts, then with the bot's own token."""
        assert record.status_message_id is not None
        if self.token_valid(record):
            try:
                edited = await self._webhook(record).edit_message(
                    record.status_message_id,
                    content=message.content,
                    embed=message.embed,
                    attachments=message.discord_files(),
                    view=message.view,
                    allowed_mentions=message.allowed_mentions,
                )
                return edited.id
            except discord.HTTPException as exc:
                if not _token_refused(exc):
                    raise
                self._token_died(record)
        edited_message = await self._channel(record).get_partial_message(record.status_message_id).edit(
            content=message.content,
            embed=message.embed,
            attachments=message.discord_files(),
            view=message.view,
            allowed_mentions=message.allowed_mentions,
        )
        return edited_message.id if edited_message is not None else record.status_message_id

    async def _send_to_channel(self, record: JobRecord, message: Outgoing, nonce: str | None = None) -> int:
        sent = await self._channel(record).send(
            content=message.content,
            embed=message.embed,
            files=message.discord_files(),
            view=message.view or discord.utils.MISSING,
            allowed_mentions=message.allowed_mentions,
            nonce=nonce,
        )
        return sent.id

    async def _ping(self, record: JobRecord, text: str) -> None:
        """Reply to the status message with ``text``, notifying the requester alone (at most once)."""
        assert record.status_message_id is not None
        reference = discord.MessageReference(
            message_id=record.status_message_id, channel_id=record.channel_id, fail_if_not_exists=False
        )
        try:
            await with_retries(
                lambda: self._channel(record).send(
                    content=text,
                    reference=reference,
                    allowed_mentions=discord.AllowedMentions(
                        everyone=False, roles=False, users=[discord.Object(record.user_id)], replied_user=False
                    ),
                    nonce=ping_nonce(record),
                ),
                config=self._config,
                what=f"notifying the requester of job {record.id}",
            )
        except (discord.HTTPException, DeliveryFailed) as exc:
            log.warning("could not notify the requester of job %s: %s", record.id, exc)

    async def deliver(
        self, record: JobRecord, build: Callable[[bool], Outgoing], ping: str | None = None
    ) -> None:
        """Deliver the final answer once; ``build(mention)`` makes the message (mention for channel posts).

        ``ping``, when given, is the reply that notifies the requester after the answer was edited in.
        """
        if record.delivery == "delivered":
            return
        if record.delivery == "sending":
            found = await self._find_delivered(record)
            if found is not None:
                log.info("job %s was already delivered (message %s)", record.id, found)
                await self._store.mark_delivered(record.id, found)
                return
        use_edit = record.status_message_id is not None
        try:
            if use_edit:
                try:
                    await self._store.begin_delivery(record.id, "edit")
                    message_id = await with_retries(
                        lambda: self._edit(record, build(False)),
                        config=self._config,
                        what=f"delivering job {record.id}",
                    )
                except discord.HTTPException as exc:
                    # The status message was deleted (or the token died mid-way): the channel still works.
                    log.warning("editing the answer of job %s failed (%s); posting it to the channel", record.id, exc)
                    use_edit = False
            if not use_edit:
                await self._store.begin_delivery(record.id, "channel")
                message_id = await with_retries(
                    lambda: self._send_to_channel(record, build(True), nonce=record.nonce),
                    config=self._config,
                    what=f"delivering job {record.id} to its channel",
                )
        except DeliveryFailed as exc:
            # Discord or the network is down: keep the job open so a later sweep (or restart) retries.
            log.error("could not deliver job %s yet: %s", record.id, exc)
            return
        except discord.HTTPException as exc:
            log.error("giving up delivering job %s: %s", record.id, exc)
            await self._store.give_up_delivery(record.id, f"delivery failed: {exc}")
            record.delivery = "gave_up"
            return
        await self._store.mark_delivered(record.id, message_id)
        record.delivery = "delivered"
        if use_edit and ping is not None:
            await self._ping(record, ping)

    async def _find_delivered(self, record: JobRecord) -> int | None:
        """After a crash mid-delivery: the id of the final message if it already reached Discord."""
        footer = job_footer(record)
        me = self._client.user.id if self._client.user else None

        def is_final(message: discord.Message) -> bool:
            return any(
                embed.title in FINAL_TITLES and (embed.footer.text or "").startswith(footer) for embed in message.embeds
            )

        try:
            if record.delivery_mode == "edit" and record.status_message_id is not None:
                # Editing again would be harmless, but the ping after it would not be: look first.
                message = await self._channel(record).fetch_message(record.status_message_id)
                return message.id if is_final(message) else None
            channel = self._client.get_partial_messageable(record.channel_id, guild_id=record.guild_id)
            after = discord.Object(record.status_message_id or discord.utils.time_snowflake(_utc(record.created_at)))
            async for message in channel.history(limit=_HISTORY_LIMIT, after=after, oldest_first=False):
                if (me is None or message.author.id == me) and is_final(message):
                    return message.id
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("could not check whether job %s was delivered (%s); relying on the nonce", record.id, exc)
        return None
