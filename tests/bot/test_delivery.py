"""Delivering final answers: retries, fallbacks, and never a second message after a crash.

A real discord.py client (logged in over REST only; delivery needs no gateway) talks to
the fake Discord in this process.
"""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import discord
import pytest

from bot.config import DeliveryConfig
from bot.delivery import Delivery, DeliveryFailed, with_retries
from bot.jobs import JobParams, JobRecord, new_job_id
from bot.render import failed_message
from bot.store import JobStore
from tests.bot.in_process import logged_in
from tests.fake_discord import FakeDiscord

CONFIG = DeliveryConfig(attempts=3, backoff_s=0.01, token_margin_s=0.0)


@pytest.fixture
async def setup(tmp_path):
    async with logged_in(tmp_path) as (fake, client, store):
        yield fake, client, store, Delivery(client, store, CONFIG)


async def _record(fake: FakeDiscord, store: JobStore, **changes) -> JobRecord:
    """A job whose interaction token has expired, so answers go to the channel."""
    values = {
        "id": new_job_id(),
        "user_id": fake.user.id,
        "guild_id": fake.guild.id,
        "channel_id": fake.channel.id,
        "application_id": fake.application_id,
        "interaction_token": "expired-token",
        "token_expires_at": time.time() - 1,
        "upload_limit": 8_000_000,
        "params": JobParams(quality="fast", size=32, steps=2, seed=1),
        "content_blob": "c",
        "style_ref": "preset:starry_night",
        "created_at": time.time() - 5,
        "state": "failed",
        "error": "The worker crashed.",
    }
    values.update(changes)
    record = JobRecord(**values)
    await store.add(record)
    return record


def _build(record: JobRecord):
    return lambda mention: failed_message(record, record.error or "", mention=mention)


async def test_an_expired_token_means_a_channel_message_that_mentions_the_requester(setup):
    fake, _, store, delivery = setup
    record = await _record(fake, store)
    await delivery.deliver(record, _build(record))
    [message] = fake.channel_messages()
    assert message.kind == "channel" and message.mentions_user(fake.user) and message.nonce == record.nonce
    stored = await store.get(record.id)
    assert (stored.delivery, stored.delivery_mode, stored.delivered_message_id) == ("delivered", "channel", message.id)

    await delivery.deliver(stored, _build(stored))
    assert len(fake.channel_messages()) == 1


async def test_a_restart_after_sending_but_before_recording_sends_nothing_new(setup):
    fake, client, store, delivery = setup
    record = await _record(fake, store)
    await store.begin_delivery(record.id, "channel")
    channel = client.get_partial_messageable(fake.channel.id)
    already = await channel.send(embed=_build(record)(True).embed)

    crashed = await store.get(record.id)
    await delivery.deliver(crashed, _build(crashed))
    assert [m.id for m in fake.channel_messages()] == [already.id]
    assert (await store.get(record.id)).delivered_message_id == already.id


async def test_a_restart_that_finds_an_edit_already_made_sends_nothing_new(setup):
    fake, client, store, delivery = setup
    channel = client.get_partial_messageable(fake.channel.id)
    status = await channel.send(content="status")
    record = await _record(fake, store, status_message_id=status.id)
    await store.begin_delivery(record.id, "edit")
    await status.edit(content=None, embed=_build(record)(False).embed)

    crashed = await store.get(record.id)
    await delivery.deliver(crashed, _build(crashed))
    assert [m.id for m in fake.channel_messages()] == [status.id]
    assert (await store.get(record.id)).delivery == "delivered"


async def test_server_errors_and_rate_limits_that_reach_the_bot_are_retried(setup):
    fake, _, store, delivery = setup
    record = await _record(fake, store)
    posts = r"/channels/\d+/messages$"
    # Neither is retried by discord.py itself (it retries only 500/502/504 and Discord's own 429s).
    fake.fail_next("POST", posts, status=503, count=1)
    fake.rate_limit_next("POST", posts, retry_after=1.0, count=1, from_proxy=True)
    await delivery.deliver(record, _build(record))
    assert len(fake.channel_messages()) == 1
    attempts = fake.requests_to("POST", posts)
    assert [a.status for a in attempts] == [503, 429, 200]
    after_503, after_429 = (later.started_at - earlier.finished_at for earlier, later in itertools.pairwise(attempts))
    assert after_503 >= CONFIG.backoff_s
    assert after_429 >= 1.0, f"Retry-After said 1 s, the retry came {after_429:.3f} s later"
    assert (await store.get(record.id)).delivery == "delivered"


async def test_a_channel_down_for_longer_than_the_attempts_leaves_the_job_open_for_the_sweep(setup):
    fake, _, store, delivery = setup
    record = await _record(fake, store)
    fake.fail_next("POST", r"/channels/\d+/messages$", status=503, count=CONFIG.attempts)
    await delivery.deliver(record, _build(record))
    assert len(fake.requests_to("POST", r"/channels/\d+/messages$")) == CONFIG.attempts
    assert fake.channel_messages() == []
    assert (await store.get(record.id)).delivery == "sending"

    await delivery.deliver(await store.get(record.id), _build(record))
    assert len(fake.channel_messages()) == 1
    assert (await store.get(record.id)).delivery == "delivered"


async def test_a_forbidden_channel_gives_up_instead_of_retrying_forever(setup):
    fake, _, store, delivery = setup
    record = await _record(fake, store)
    fake.fail_next("POST", r"/channels/\d+/messages$", status=403, count=1)
    await delivery.deliver(record, _build(record))
    assert fake.channel_messages() == []
    assert (await store.get(record.id)).delivery == "gave_up"


def _server_error() -> discord.DiscordServerError:
    return discord.DiscordServerError(SimpleNamespace(status=503, reason="Service Unavailable", headers={}), "down")


async def test_with_retries_backs_off_exponentially_then_gives_up():
    calls = []

    async def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise _server_error()
        return "sent"

    assert await with_retries(flaky, config=CONFIG, what="test") == "sent"
    waits = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert waits[0] >= CONFIG.backoff_s and waits[1] >= 2 * CONFIG.backoff_s, waits

    tries = []

    async def down():
        tries.append(1)
        raise _server_error()

    with pytest.raises(DeliveryFailed, match="still failing after 3 attempts"):
        await with_retries(down, config=CONFIG, what="test")
    assert len(tries) == CONFIG.attempts


async def test_with_retries_honours_429_retry_after_and_passes_other_errors_through():
    attempts = []

    async def limited():
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise discord.HTTPException(
                SimpleNamespace(status=429, reason="Too Many Requests", headers={"Retry-After": "0.5"}), "slow down"
            )
        return "ok"

    assert await with_retries(limited, config=CONFIG, what="test") == "ok"
    # The backoff would be 0.01 s: only reading Retry-After makes the wait half a second.
    assert attempts[1] - attempts[0] >= 0.5

    calls = []

    async def not_found():
        calls.append(1)
        raise discord.NotFound(SimpleNamespace(status=404, reason="Not Found", headers={}), "gone")

    with pytest.raises(discord.NotFound):
        await with_retries(not_found, config=CONFIG, what="test")
    assert len(calls) == 1
