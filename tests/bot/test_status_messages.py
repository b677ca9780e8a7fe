"""A job's status message after its interaction token expired: still edited, the answer edited in, one ping.

A real discord.py client talks to the fake Discord over REST, as the bot's delivery does.
"""

from __future__ import annotations

import time

import discord
import pytest

from bot.config import DeliveryConfig
from bot.delivery import Delivery
from bot.jobs import JobParams, JobRecord, new_job_id
from bot.render import Outgoing, failed_message, ready_ping
from bot.store import JobStore
from tests.bot.in_process import logged_in
from tests.fake_discord import FakeDiscord

CONFIG = DeliveryConfig(attempts=2, backoff_s=0.01, token_margin_s=0.0)


@pytest.fixture
async def setup(tmp_path):
    async with logged_in(tmp_path) as (fake, client, store):
        yield fake, client, store, Delivery(client, store, CONFIG)


async def _expired_job(fake: FakeDiscord, store: JobStore, **changes) -> JobRecord:
    now = time.time()
    record = JobRecord(
        id=new_job_id(),
        user_id=fake.user.id,
        guild_id=fake.guild.id,
        channel_id=fake.channel.id,
        application_id=fake.application_id,
        interaction_token="expired",
        token_expires_at=now - 1,
        upload_limit=8_000_000,
        params=JobParams(quality="fast", size=32, steps=2, seed=1),
        content_blob="c",
        style_ref="preset:starry_night",
        created_at=now - 1000,
        **changes,
    )
    await store.add(record)
    return record


def _status(text: str):
    return Outgoing(embed=discord.Embed(title="🖌️ Stylising", description=text))


async def test_after_the_token_expired_the_status_is_posted_and_edited_with_the_bots_token(setup):
    fake, _, store, delivery = setup
    record = await _expired_job(fake, store)
    status_id = await delivery.post_status(record, _status("queued"))
    [status] = fake.channel_messages()
    assert status.id == status_id and status.kind == "channel"
    assert await delivery.edit_status(record, _status("iteration 5"))
    assert status.embeds[0]["description"] == "iteration 5"
    assert fake.requests_to("PATCH", r"^/webhooks/") == [], "an expired token is not even tried"


async def test_the_answer_is_edited_in_and_the_requester_alone_is_pinged_once(setup):
    fake, client, store, delivery = setup
    other = fake.add_user("bob")
    status = await client.get_partial_messageable(fake.channel.id).send(content="status")
    record = await _expired_job(fake, store, status_message_id=status.id, state="failed", error=f"<@{other.id}> broke")

    def build(mention: bool):
        return failed_message(record, record.error or "", mention=mention)

    await delivery.deliver(record, build, ready_ping(record))
    edited, ping = fake.channel_messages()
    assert edited.id == status.id and edited.embeds[0]["title"] == "❌ Failed"
    assert ping.mentions == [fake.user.id] and ping.message_reference["message_id"] == str(status.id)
    assert not ping.mentions_user(other)
    assert (await store.get(record.id)).delivery == "delivered"

    await delivery.deliver(await store.get(record.id), build, ready_ping(record))
    assert len(fake.channel_messages()) == 2, "delivered once, pinged once"


async def test_a_token_that_dies_early_is_replaced_by_the_bots_own(setup):
    fake, client, store, delivery = setup
    status = await client.get_partial_messageable(fake.channel.id).send(content="status")
    record = await _expired_job(fake, store, status_message_id=status.id)
    record.token_expires_at = time.time() + 600  # the bot thinks the token is good; Discord says 401
    assert await delivery.edit_status(record, _status("still going"))
    assert [r.status for r in fake.requests_to("PATCH", r"/messages/")] == [404, 200], "Unknown Webhook, then ours"
    assert not delivery.token_valid(record)
