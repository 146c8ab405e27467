"""Video data: decoding (:mod:`.files`), clip sampling and datasets of video files (:mod:`.clips`), and the
embedded generated motion clips, easy and hard (nothing stored; see :mod:`.motion`)."""
from .clips import (VideoClipDataset, collate_clips, eval_frame_indices, read_kinetics_csv,
                    scan_video_folder, train_frame_indices)
from .files import VIDEO_EXTENSIONS, VideoDecodeError, read_video, require_av, write_video
from .motion import (HARD_MOTION_CLASS_NAMES, HARD_MOTION_SHAPES, MOTION_CLASS_NAMES, MOTION_DIFFICULTIES, MotionClips,
                     render_hard_motion_clip, render_motion_clip)

__all__ = ["MOTION_CLASS_NAMES", "HARD_MOTION_CLASS_NAMES", "HARD_MOTION_SHAPES", "MOTION_DIFFICULTIES", "MotionClips",
           "render_motion_clip", "render_hard_motion_clip", "VIDEO_EXTENSIONS", "VideoDecodeError", "require_av",
           "read_video", "write_video", "train_frame_indices", "eval_frame_indices", "scan_video_folder",
           "read_kinetics_csv", "VideoClipDataset", "collate_clips"]
