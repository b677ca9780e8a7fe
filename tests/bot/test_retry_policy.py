"""The delivery retry policy is explicit and bounded: long rate limits are left for later, never slept through.

A real discord.py client, built the way the bot builds it (``max_ratelimit_timeout``), talks to
the fake Discord over REST.
"""

from __future__ import annotations

import time

import discord
import pytest

from bot.app import NSTBot
from bot.config import Config, DeliveryConfig
from bot.delivery import Delivery
from bot.images import channel_upload_limit
from bot.jobs import JobParams, JobRecord, new_job_id
from bot.render import failed_message
from bot.store import JobStore
from tests.bot.in_process import logged_in
from tests.fake_discord import FakeDiscord

CONFIG = DeliveryConfig(attempts=3, backoff_s=0.01, token_margin_s=0.0, attempt_timeout_s=1.0)


@pytest.fixture
async def setup(tmp_path):
    async with logged_in(tmp_path, max_ratelimit_timeout=CONFIG.max_rate_limit_wait_s) as (fake, client, store):
        yield fake, client, store, Delivery(client, store, CONFIG)


async def _record(fake: FakeDiscord, store: JobStore, *, token_valid: bool, **changes) -> JobRecord:
    now = time.time()
    values = {
        "id": new_job_id(),
        "user_id": fake.user.id,
        "guild_id": fake.guild.id,
        "channel_id": fake.channel.id,
        "application_id": fake.application_id,
        "interaction_token": "token",
        "token_expires_at": now + 600 if token_valid else now - 1,
        "upload_limit": 8_000_000,
        "params": JobParams(quality="fast", size=32, steps=2, seed=1),
        "content_blob": "c",
        "style_ref": "preset:starry_night",
        "created_at": now - 5,
        "state": "failed",
        "error": "The worker crashed.",
    }
    values.update(changes)
    record = JobRecord(**values)
    await store.add(record)
    return record


def _build(record: JobRecord):
    return lambda mention: failed_message(record, record.error or "", mention=mention)


def test_the_bot_is_built_to_raise_on_long_rate_limits_instead_of_sleeping():
    bot = NSTBot(Config(delivery=DeliveryConfig(max_rate_limit_wait_s=45.0)))
    assert bot.http.max_ratelimit_timeout == 45.0


async def test_a_rate_limit_longer_than_the_cap_is_left_for_the_sweep_after_one_request(setup):
    fake, _, store, delivery = setup
    record = await _record(fake, store, token_valid=False)
    fake.rate_limit_next("POST", r"/channels/\d+/messages$", retry_after=600.0, count=1)
    started = time.monotonic()
    await delivery.deliver(record, _build(record))
    assert time.monotonic() - started < 60, "a 10-minute rate limit must not be slept through"
    assert len(fake.requests_to("POST", r"/channels/\d+/messages$")) == 1
    assert fake.channel_messages() == []
    assert (await store.get(record.id)).delivery == "sending", "the answer stays owed, for the sweep"

    await delivery.deliver(await store.get(record.id), _build(record))
    assert len(fake.channel_messages()) == 1


async def test_a_webhook_call_stuck_in_a_rate_limit_is_cut_off_and_retried(setup):
    fake, client, store, delivery = setup
    interaction_message = await client.get_partial_messageable(fake.channel.id).send(content="status")
    record = await _record(fake, store, token_valid=True, status_message_id=interaction_message.id)
    # discord.py's webhook adapter sleeps through any 429, however long: the attempt timeout bounds it.
    fake.rate_limit_next("PATCH", r"^/webhooks/", retry_after=600.0, count=1)
    fake.fail_next("PATCH", r"^/webhooks/", status=404, count=1)
    await delivery.deliver(record, _build(record))
    assert len(fake.requests_to("PATCH", r"^/webhooks/")) == 2
    [answer] = [m for m in fake.channel_messages() if m.embeds]
    assert answer.kind == "channel", "after the webhook failed, the answer goes to the channel"


async def test_server_errors_make_at_most_the_configured_attempts(setup):
    fake, _, store, delivery = setup
    record = await _record(fake, store, token_valid=False)
    # discord.py repeats a 503 on a bot-token route zero times, so each attempt is one request.
    fake.fail_next("POST", r"/channels/\d+/messages$", status=503, count=10)
    await delivery.deliver(record, _build(record))
    assert len(fake.requests_to("POST", r"/channels/\d+/messages$")) == CONFIG.attempts
    assert (await store.get(record.id)).delivery == "sending"


async def test_a_channel_post_is_sized_for_the_server_not_the_requesters_nitro(setup):
    fake, _, store, delivery = setup
    record = await _record(fake, store, token_valid=False, upload_limit=500 * 1024 * 1024)
    server = delivery.server_upload_limit(record)
    assert server == discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES, "an uncached server gets Discord's default"
    assert channel_upload_limit(record.upload_limit, server) == server
    assert channel_upload_limit(1024, server) == 1024


async def test_without_read_message_history_the_nonce_still_prevents_a_second_answer(setup):
    fake, client, store, delivery = setup
    for role in (fake.guild.everyone, *fake.guild.roles.values()):
        role.permissions &= ~(1 << 16)  # no Read Message History, from any role
    record = await _record(fake, store, token_valid=False)
    await store.begin_delivery(record.id, "channel")
    already = await client.get_partial_messageable(fake.channel.id).send(
        embed=_build(record)(True).embed, nonce=record.nonce
    )
    crashed = await store.get(record.id)
    await delivery.deliver(crashed, _build(crashed))
    assert fake.requests_to("GET", r"/channels/\d+/messages$")[-1].status == 403
    assert [m.id for m in fake.channel_messages()] == [already.id]
