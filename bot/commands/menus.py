"""Right-click (message context-menu) commands: stylize pictures already in the channel.

"Use as style" saves a message's image as the user's style; "Stylize with my style" repaints
a message's image with it (or a preset picked from a menu when none is saved); "Stylize with a
preset…" offers the presets.  A message with several images asks which one first.  The
pickers are private (ephemeral) and short-lived: they belong to one click, not to a job.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.commands.contexts import GUILD_INSTALL, GUILD_ONLY_CONTEXTS, POSTING_PERMISSIONS
from bot.validation import StylizeOptions

if TYPE_CHECKING:
    from bot.app import NSTBot

USE_AS_STYLE = "Use as style"
STYLIZE_WITH_MY_STYLE = "Stylize with my style"
STYLIZE_WITH_PRESET = "Stylize with a preset…"

# How long a picker answers before its menus stop working (the user can right-click again).
PICKER_TIMEOUT_S = 600.0
# Discord allows 25 options in a select menu.
_MAX_OPTIONS = 25


def message_images(message: discord.Message) -> list[discord.Attachment]:
    """The message's attachments that are images (by their declared type, or by name when it has none)."""
    extensions = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
    return [
        attachment
        for attachment in message.attachments
        if (attachment.content_type or "").startswith("image/")
        or (attachment.content_type is None and attachment.filename.lower().endswith(extensions))
    ][:_MAX_OPTIONS]


def _image_option(index: int, attachment: discord.Attachment) -> discord.SelectOption:
    size = f" ({attachment.width}×{attachment.height})" if attachment.width and attachment.height else ""
    name = attachment.filename[: 100 - len(size) - len(f"{index + 1}. ")]
    return discord.SelectOption(label=f"{index + 1}. {name}{size}", value=str(index))


class StylizePicker(discord.ui.View):
    """The private menus that complete a right-click: which image, and (when needed) which preset.

    Once every choice is made, ``start`` runs with the acknowledged interaction of the last one.
    """

    def __init__(
        self,
        bot: NSTBot,
        images: list[discord.Attachment],
        *,
        need_preset: bool,
        start: Callable[[discord.Interaction, discord.Attachment, str | None], Awaitable[None]],
    ) -> None:
        super().__init__(timeout=PICKER_TIMEOUT_S)
        self.images = images
        self.image: discord.Attachment | None = images[0] if len(images) == 1 else None
        self.preset: str | None = None
        self.need_preset = need_preset
        self._start = start
        if self.image is None:
            self.image_menu = discord.ui.Select(
                custom_id="nst-pick:image",
                placeholder="Which image?",
                options=[_image_option(index, image) for index, image in enumerate(images)],
            )
            self.image_menu.callback = self._picked_image
            self.add_item(self.image_menu)
        if need_preset:
            self.preset_menu = discord.ui.Select(
                custom_id="nst-pick:preset",
                placeholder="Which painting's style?",
                options=[
                    discord.SelectOption(label=preset.label[:100], value=preset.key)
                    for preset in list(bot.presets)[:_MAX_OPTIONS]
                ],
            )
            self.preset_menu.callback = self._picked_preset
            self.add_item(self.preset_menu)

    def prompt(self) -> str:
        """What the picker asks."""
        asks = []
        if self.image is None:
            asks.append(f"This message has {len(self.images)} images: pick the one to repaint")
        if self.need_preset:
            asks.append("pick the painting whose style to use")
        return "; ".join(asks).capitalize() + "."

    async def _picked_image(self, interaction: discord.Interaction) -> None:
        index = int(self.image_menu.values[0])
        self.image = self.images[index]
        for option in self.image_menu.options:
            option.default = option.value == str(index)
        await self._advance(interaction)

    async def _picked_preset(self, interaction: discord.Interaction) -> None:
        self.preset = self.preset_menu.values[0]
        for option in self.preset_menu.options:
            option.default = option.value == self.preset
        await self._advance(interaction)

    async def _advance(self, interaction: discord.Interaction) -> None:
        if self.image is None or (self.need_preset and self.preset is None):
            await interaction.response.edit_message(view=self)
            return
        self.stop()
        await interaction.response.edit_message(content="⏳ Working on it…", view=None)
        await self._start(interaction, self.image, self.preset)


async def _no_image(interaction: discord.Interaction) -> None:
    await interaction.response.send_message(
        "⚠️ That message has no image I can use. "
        "Right-click a message with a PNG, JPEG, WebP, GIF or BMP attached.",
        ephemeral=True,
    )


async def _stylize(
    interaction: discord.Interaction, image: discord.Attachment, preset: str | None, saved_style: str | None
) -> None:
    """Start a job on ``image`` (already acknowledged): with ``preset``, or else the saved style."""
    bot: NSTBot = interaction.client  # type: ignore[assignment]
    options = StylizeOptions(preset=preset, has_style_attachment=preset is None)
    await bot.intake.stylize(interaction, options, image, None, time.time(), saved_style=saved_style)


@app_commands.context_menu(name=USE_AS_STYLE)
@GUILD_ONLY_CONTEXTS
@GUILD_INSTALL
async def use_as_style(interaction: discord.Interaction, message: discord.Message) -> None:
    """Save the message's image as the user's style."""
    bot: NSTBot = interaction.client  # type: ignore[assignment]
    images = message_images(message)
    if not images:
        await _no_image(interaction)
        return
    if len(images) == 1:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await bot.intake.remember_style(interaction, images[0])
        return

    async def remember(picked: discord.Interaction, image: discord.Attachment, _: str | None) -> None:
        await bot.intake.remember_style(picked, image)

    picker = StylizePicker(bot, images, need_preset=False, start=remember)
    await interaction.response.send_message(
        f"This message has {len(images)} images: pick the one to use as your style.", view=picker, ephemeral=True
    )


async def _open(interaction: discord.Interaction, message: discord.Message, *, use_saved: bool) -> None:
    bot: NSTBot = interaction.client  # type: ignore[assignment]
    images = message_images(message)
    if not images:
        await _no_image(interaction)
        return
    saved = await bot.store.user_style(interaction.user.id) if use_saved else None
    saved_blob = saved[0] if saved else None
    if len(images) == 1 and saved_blob is not None:
        received_at = time.time()
        await interaction.response.defer(ephemeral=True, thinking=True)
        options = StylizeOptions(has_style_attachment=True)
        await bot.intake.stylize(interaction, options, images[0], None, received_at, saved_style=saved_blob)
        return

    async def start(picked: discord.Interaction, image: discord.Attachment, preset: str | None) -> None:
        await _stylize(picked, image, preset, saved_blob)

    picker = StylizePicker(bot, images, need_preset=saved_blob is None, start=start)
    prompt = picker.prompt()
    if use_saved and saved_blob is None:
        prompt = 'You have no saved style yet (right-click an image → Apps → "Use as style"). ' + prompt
    await interaction.response.send_message(prompt, view=picker, ephemeral=True)


@app_commands.context_menu(name=STYLIZE_WITH_MY_STYLE)
@GUILD_ONLY_CONTEXTS
@GUILD_INSTALL
@app_commands.checks.bot_has_permissions(**POSTING_PERMISSIONS)
async def stylize_with_my_style(interaction: discord.Interaction, message: discord.Message) -> None:
    """Repaint the message's image with the user's saved style (or a preset, when none is saved)."""
    await _open(interaction, message, use_saved=True)


@app_commands.context_menu(name=STYLIZE_WITH_PRESET)
@GUILD_ONLY_CONTEXTS
@GUILD_INSTALL
@app_commands.checks.bot_has_permissions(**POSTING_PERMISSIONS)
async def stylize_with_preset(interaction: discord.Interaction, message: discord.Message) -> None:
    """Repaint the message's image in the style of a preset picked from a menu."""
    await _open(interaction, message, use_saved=False)


MENUS: tuple[app_commands.ContextMenu, ...] = (use_as_style, stylize_with_my_style, stylize_with_preset)
