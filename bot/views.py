"""The buttons under status and result messages.

Each button is a :class:`discord.ui.DynamicItem` whose custom id carries the action and the
job id (``nst:<action>:<job id>``).  Nothing about a button lives in memory: after a
restart, discord.py matches the custom id against the template and the job's parameters
come from the durable store, so old buttons keep working.
"""

from __future__ import annotations

import re
from typing import Any

import discord

ACTIONS: tuple[str, ...] = ("cancel", "rerun", "more", "less", "colors", "adjust", "higher", "delete")

CUSTOM_ID_TEMPLATE = rf"nst:(?P<action>{'|'.join(ACTIONS)}):(?P<job_id>[0-9a-f]{{32}})"
_PATTERN = re.compile(CUSTOM_ID_TEMPLATE)


def encode_custom_id(action: str, job_id: str) -> str:
    """``("rerun", id)`` -> ``"nst:rerun:<id>"``; raises ValueError for anything the template would not match."""
    custom_id = f"nst:{action}:{job_id}"
    if not _PATTERN.fullmatch(custom_id):
        raise ValueError(f"cannot encode action {action!r} for job {job_id!r}")
    return custom_id


def decode_custom_id(custom_id: str) -> tuple[str, str] | None:
    """``"nst:rerun:<id>"`` -> ``("rerun", id)``; ``None`` for custom ids that are not ours."""
    match = _PATTERN.fullmatch(custom_id)
    return (match["action"], match["job_id"]) if match else None


_STYLES: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "cancel": ("Cancel", "✖️", discord.ButtonStyle.danger),
    "rerun": ("Re-run (new seed)", "🎲", discord.ButtonStyle.secondary),
    "more": ("More style", "➕", discord.ButtonStyle.secondary),
    "less": ("Less style", "➖", discord.ButtonStyle.secondary),
    "colors": ("Preserve colours", "🎨", discord.ButtonStyle.secondary),
    "adjust": ("Adjust…", "🎛️", discord.ButtonStyle.secondary),
    "higher": ("Higher quality", "⬆️", discord.ButtonStyle.secondary),
    "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
}


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=CUSTOM_ID_TEMPLATE):
    """A button acting on one job; the click is handled by the client's ``handle_job_button``."""

    def __init__(self, action: str, job_id: str, *, label: str | None = None) -> None:
        default_label, emoji, style = _STYLES[action]
        super().__init__(
            discord.ui.Button(
                label=label or default_label, emoji=emoji, style=style, custom_id=encode_custom_id(action, job_id)
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.client.handle_job_button(self.action, self.job_id, interaction)  # type: ignore[attr-defined]


def running_view(job_id: str) -> discord.ui.View:
    """The Cancel button shown while a job is queued or running."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job_id))
    return view


def result_view(job_id: str, *, preserve_colors: bool) -> discord.ui.View:
    """Under a finished image: Re-run, More style, Less style and the colour toggle; then Adjust…, Higher quality
    and Delete on a second row."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("rerun", job_id))
    view.add_item(JobButton("more", job_id))
    view.add_item(JobButton("less", job_id))
    view.add_item(JobButton("colors", job_id, label="Original colours" if preserve_colors else None))
    for action in ("adjust", "higher", "delete"):
        button = JobButton(action, job_id)
        button.row = 1
        view.add_item(button)
    return view
