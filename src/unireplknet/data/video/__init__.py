"""The embedded video data: generated motion clips, easy and hard (nothing stored; see :mod:`.motion`)."""
from .motion import (HARD_MOTION_CLASS_NAMES, HARD_MOTION_SHAPES, MOTION_CLASS_NAMES, MOTION_DIFFICULTIES, MotionClips,
                     render_hard_motion_clip, render_motion_clip)

__all__ = ["MOTION_CLASS_NAMES", "HARD_MOTION_CLASS_NAMES", "HARD_MOTION_SHAPES", "MOTION_DIFFICULTIES", "MotionClips",
           "render_motion_clip", "render_hard_motion_clip"]
