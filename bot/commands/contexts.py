"""Where the bot's commands may be used, and what the bot needs to answer there.

Every command (slash and context menu) is for servers the bot was added to: installed to a
server, not to a user account, and used in that server's channels, never in DMs.
"""

from __future__ import annotations

from discord import app_commands

GUILD_ONLY_CONTEXTS = app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
GUILD_INSTALL = app_commands.allowed_installs(guilds=True, users=False)

# The same, for app_commands.Group(...).
GROUP_CONTEXTS = app_commands.AppCommandContext(guild=True, dm_channel=False, private_channel=False)
GROUP_INSTALLS = app_commands.AppInstallationType(guild=True, user=False)

# What the bot needs in a channel to post a job's status and result there.
POSTING_PERMISSIONS = {"send_messages": True, "embed_links": True, "attach_files": True}
