"""The embedded video data: a generated set of motion clips (nothing stored; see :mod:`.motion`)."""
from .motion import MOTION_CLASS_NAMES, MotionClips, render_motion_clip

__all__ = ["MOTION_CLASS_NAMES", "MotionClips", "render_motion_clip"]
