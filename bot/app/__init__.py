"""The composition root of `robot run`: the Bolt app, its Socket Mode handler and everything they drive."""

from bot.app.robot import Robot, build_robot

__all__ = ["Robot", "build_robot"]
