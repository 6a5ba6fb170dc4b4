"""Slack staff desk adapter (slack-bolt): the only place that knows Slack."""

from bot.slack.channel import SlackChannel, build_slack_channel

__all__ = ["SlackChannel", "build_slack_channel"]
