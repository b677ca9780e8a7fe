"""The Discord bot: /stylize and friends, from interaction to finished image (see bot.app)."""
