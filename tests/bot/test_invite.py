"""The README's invite URL asks for every permission the bot uses, and its table adds up."""

from __future__ import annotations

import re
from pathlib import Path

import discord

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_invite_asks_for_what_the_bot_uses_and_matches_its_table() -> None:
    [url_value] = {int(v) for v in re.findall(r"oauth2/authorize\?[^\s`]*permissions=(\d+)", README)}
    rows = re.findall(r"^\s*\| ([A-Z][\w ]+?)\s+\| `1 << (\d+)` \| (\d+)\s+\|", README, re.MULTILINE)
    assert rows, "the permission table is missing"
    assert all(int(value) == 1 << int(bit) for _, bit, value in rows)
    [total] = re.findall(r"\*\*Total\*\*\s*\|\s*\|\s*\*\*(\d+)\*\*", README)
    assert int(total) == sum(int(value) for _, _, value in rows) == url_value
    granted = discord.Permissions(url_value)
    # send results, embed them, upload images, and read history to find an answer already sent after a crash
    for name in ("send_messages", "embed_links", "attach_files", "read_message_history", "use_application_commands"):
        assert getattr(granted, name), f"the invite lacks {name}"
