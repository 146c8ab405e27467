"""Video files <-> uint8 RGB frames, decoded and written with PyAV.

PyAV (``pip install 'unireplknet[video]'``): torchvision 0.29 no longer decodes video and torchcodec needs a
system FFmpeg, while PyAV wheels carry their own.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from ..folder import DataError

__all__ = ["VIDEO_EXTENSIONS", "VideoDecodeError", "require_av", "read_video", "write_video"]

_logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")


class VideoDecodeError(DataError):
    """A video file could not be opened or decoded, or holds no frames."""


MAX_VIDEO_PIXELS_ENV = "UNIREPLKNET_MAX_VIDEO_PIXELS"
#: Every decoded frame is kept (3 bytes a pixel), so frames × height × width is bounded: 250 M pixels are 0.75 GB
#: (with torch's own ≈ 0.9 GB a refused video stays under 2 GB), e.g. 8 s of 720p at 30 fps (221 M) fits;
#: 40 GIF frames of 4000×4000 (640 M, 0.5 MB on disk) do not.
DEFAULT_MAX_VIDEO_PIXELS = 250_000_000


def max_video_pixels() -> int:
    """Frames × height × width that one video may decode to: ``UNIREPLKNET_MAX_VIDEO_PIXELS`` or 250,000,000."""
    from ...limits import env_limit

    try:
        return int(env_limit(MAX_VIDEO_PIXELS_ENV, DEFAULT_MAX_VIDEO_PIXELS, "pixels"))
    except ValueError as e:
        raise VideoDecodeError(str(e)) from None


# ----------------------------------------------------------------------------------------------- decoding
def require_av():
    """Import PyAV or raise an ImportError that names the extra to install."""
    try:
        import av  # noqa: F401
    except ImportError:
        raise ImportError("decoding video files needs PyAV: pip install 'unireplknet[video]' (or pip install av)") from None
    return av


def read_video(path: Union[str, Path], max_frames: Optional[int] = None) -> np.ndarray:
    """All frames (or the first ``max_frames``) of a video file as uint8 RGB (T, H, W, 3).

    Raises :class:`VideoDecodeError` naming the file when it is missing, unreadable, has no video stream or
    no decodable frame. A file that breaks off after some good frames gives those frames (with a warning).
    """
    av = require_av()
    path = Path(path)
    if not path.is_file():  # missing, or a FIFO/device that would block the decoder
        from ...checkpoint import not_a_regular_file

        raise VideoDecodeError(not_a_regular_file(path, "video file"))
    frames: List[np.ndarray] = []
    budget, decoded = max_video_pixels(), 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path} has no video stream (audio-only or not a video file)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            side = (stream.codec_context.width or 0) * (stream.codec_context.height or 0)
            if side > budget:  # one frame alone is over the limit: refused before the first is decoded
                raise VideoDecodeError(
                    f"{path}: frames of {stream.codec_context.width}x{stream.codec_context.height} pixels, over the "
                    f"limit of {budget:,} pixels; raise it with {MAX_VIDEO_PIXELS_ENV}=<pixels> if it is trusted")
            declared = int(stream.frames or 0)  # 0 where the container does not say (e.g. some GIFs)
            if max_frames is not None and declared:
                declared = min(declared, max_frames)
            if declared and declared * side > budget:  # refused from the header, before any frame is decoded
                raise VideoDecodeError(
                    f"{path}: {declared} frames of {stream.codec_context.width}x{stream.codec_context.height} "
                    f"are {declared * side:,} pixels, over the limit of {budget:,} on frames × height × width; "
                    f"shorten or downscale it, or raise the limit with {MAX_VIDEO_PIXELS_ENV}=<pixels> if it is "
                    "trusted")
            try:
                for frame in container.decode(stream):
                    decoded += frame.width * frame.height  # counted before the frame is converted and kept
                    if decoded > budget:
                        raise VideoDecodeError(
                            f"{path}: more than {budget:,} pixels over its first {len(frames) + 1} frames of "
                            f"{frame.width}x{frame.height}, the limit on frames × height × width; shorten or "
                            f"downscale it, or raise the limit with {MAX_VIDEO_PIXELS_ENV}=<pixels> if it is trusted")
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if max_frames is not None and len(frames) >= max_frames:
                        break
            except av.error.FFmpegError as e:  # truncated / corrupt data after some frames
                if not frames:
                    raise
                _logger.warning("%s: decoding stopped after %d frames (%s); using those", path, len(frames), e)
    except VideoDecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - PyAV raises many types for bad files; report them uniformly
        raise VideoDecodeError(f"cannot decode video {path}: {e}") from e
    if not frames:
        raise VideoDecodeError(f"{path} contains no decodable video frame (empty or corrupt file)")
    return np.stack(frames)


def write_video(path: Union[str, Path], frames: np.ndarray, fps: int = 25, codec: str = "mpeg4") -> Path:
    """Write uint8 (T, H, W, 3) frames as a video file (used to make test clips and for exporting the demo set)."""
    av = require_av()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"} if codec == "mpeg4" else {}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
