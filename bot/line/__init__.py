"""LINE channel (line-bot-sdk v3, Messaging API): the only package that imports `linebot`."""

from bot.line.channel import LineChannel, build_line_channel

__all__ = ["LineChannel", "build_line_channel"]
