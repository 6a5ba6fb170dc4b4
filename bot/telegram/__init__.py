"""Telegram channel (python-telegram-bot v22): the only package that imports `telegram`."""

from bot.telegram.channel import TelegramChannel, build_channel

__all__ = ["TelegramChannel", "build_channel"]
