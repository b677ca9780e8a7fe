"""Message rendering and text formatting."""

from __future__ import annotations

import io
import time

from PIL import Image

from bot.formatting import format_bytes, format_duration, format_loss, loss_table, progress_bar
from bot.images import fit_upload
from bot.jobs import JobParams, JobRecord, ResultSummary, new_job_id
from bot.render import (
    FINAL_TITLES,
    cancelled_message,
    failed_message,
    job_footer,
    queued_message,
    result_message,
    running_message,
)
from nst_engine.imageio import encode_image
from nst_engine.request import LossSummary, LossTerms, Progress

USER = 4242
NOW = 1_800_000_000.0


def _record(**params) -> JobRecord:
    return JobRecord(
        id=new_job_id(),
        user_id=USER,
        guild_id=1,
        channel_id=2,
        application_id=3,
        interaction_token="token",
        token_expires_at=time.time() + 900,
        upload_limit=10_000_000,
        params=JobParams(quality="fast", size=384, steps=200, seed=7, **params),
        content_blob="c",
        style_ref="preset:starry_night",
        created_at=time.time(),
    )


def _summary() -> ResultSummary:
    return ResultSummary(
        initial=LossTerms(content=0.0, style=12345.678, tv=0.5, total=12346.178),
        final=LossTerms(content=81.25, style=250.0, tv=0.25, total=331.5),
        evaluations=200,
        seconds=42.4,
        device="cuda:0",
        seed=7,
        weights="caffe",
        width=384,
        height=256,
    )


def test_formatting_helpers():
    assert format_bytes(512) == "512 bytes"
    assert format_bytes(2048) == "2.0 KiB"
    assert format_bytes(25 * 1024 * 1024) == "25.0 MiB"
    assert format_duration(4.4) == "4 s"
    assert format_duration(125) == "2 min 5 s"
    assert format_duration(3600 + 180) == "1 h 3 min"
    assert progress_bar(5, 10, width=10) == "█████░░░░░ 50%"
    assert progress_bar(0, 0, width=4) == "░░░░ 0%"
    assert progress_bar(20, 10, width=4) == "████ 100%"
    assert format_loss(0) == "0"
    assert format_loss(12.3456) == "12.35"
    assert format_loss(20000) == "20000"
    assert format_loss(0.05) == "0.05000"
    assert format_loss(1.5e7) == "1.500e+07"


def test_loss_table_lists_every_term_initial_to_final():
    table = loss_table(LossSummary(_summary().initial, _summary().final)).splitlines()
    assert [line.split()[0] for line in table[1:]] == ["content", "style", "tv", "total"]
    assert table[2].split() == ["style", "12346", "→", "250.0"]
    assert len({len(line) for line in table}) == 1


def test_queued_and_running_messages_show_position_progress_and_preview():
    record = _record()
    queued = queued_message(record, "The Starry Night", position=3, wait=75, notes=["a note"])
    assert "Position **3**" in queued.embed.description
    assert f"starts <t:{int(NOW) + 75}:R>" in queued_message(record, "x", 3, 75, [], now=NOW).embed.description
    assert f"Requested by <@{USER}>" in queued.embed.description
    assert "a note" in queued.embed.description
    assert [item.custom_id for item in queued.view.children] == [f"nst:cancel:{record.id}"]

    losses = LossTerms(content=1.0, style=2.0, tv=0.0, total=3.0)
    progress = Progress(iteration=50, total=200, losses=losses, preview=b"png-bytes")
    running = running_message(record, "The Starry Night", progress, device="cpu", elapsed=10.0, notes=[], now=NOW)
    assert "25%" in running.embed.description
    assert "Iteration **50** / 200" in running.embed.description
    assert f"done <t:{int(NOW) + 30}:R>" in running.embed.description, "a countdown each client keeps moving"
    assert f"Requested by <@{USER}>" in running.embed.description
    assert running.files == [("preview.png", b"png-bytes")]
    assert running.embed.image.url == "attachment://preview.png"
    assert running.mention is None


def test_result_message_has_image_summary_and_buttons():
    record = _record(preserve_colors=True)
    message = result_message(record, "The Starry Night", _summary(), ("out.png", b"x" * 10), mention=False)
    embed = message.embed
    assert embed.title in FINAL_TITLES
    assert embed.image.url == "attachment://out.png"
    fields = {field.name: field.value for field in embed.fields}
    assert fields == {
        "Iterations": "200",
        "Size": "384×256",
        "Time": "42 s",
        "Device": "cuda:0",
        "Seed": "7",
        "Weights": "caffe",
    }
    for term in ("content", "style", "tv", "total"):
        assert term in embed.description
    assert "colours preserved" in embed.description
    assert embed.footer.text.startswith(job_footer(record))
    assert message.content is None and message.mention is None
    assert [item.custom_id.split(":")[1] for item in message.view.children] == [
        "rerun", "more", "less", "colors", "adjust", "higher", "delete"
    ]
    assert f"Requested by <@{USER}>" in embed.description

    hidden = result_message(record, "x", _summary(), ("out.png", b"x"), mention=False, spoiler=True)
    assert hidden.files[0][0] == "SPOILER_out.png" and hidden.embed.image.url is None, "an embed image cannot hide"

    mentioned = result_message(record, "x", _summary(), ("out.png", b"x"), mention=True)
    assert mentioned.content.startswith(f"<@{USER}>")
    assert mentioned.allowed_mentions.users[0].id == USER
    assert mentioned.allowed_mentions.everyone is False


def test_failed_and_cancelled_messages_say_why_and_drop_the_buttons():
    record = _record()
    failed = failed_message(record, "The worker crashed.", mention=False)
    assert failed.embed.description == f"Requested by <@{USER}>\nThe worker crashed." and failed.view is None
    cancelled = cancelled_message(record, "Cancelled by its requester.", mention=True)
    assert cancelled.embed.title in FINAL_TITLES and cancelled.content.startswith(f"<@{USER}>")


def test_fit_upload_keeps_png_when_it_fits_and_shrinks_the_format_when_not(images_dir):
    photo = Image.open(images_dir / "tubingen.jpg").convert("RGB")
    photo.thumbnail((256, 256))
    png = encode_image(photo, "png")
    assert fit_upload(png, len(png) + 10_000, "r") == ("r.png", png)

    limit = len(png) // 2
    name, data = fit_upload(png, limit, "r")
    assert name.endswith((".jpg", ".webp")) and len(data) <= limit
    assert Image.open(io.BytesIO(data)).size == photo.size

    name, data = fit_upload(png, 6_000, "r")
    assert len(data) <= 6_000
    assert Image.open(io.BytesIO(data)).size[0] < photo.size[0]
