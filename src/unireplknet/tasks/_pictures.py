"""Labels around the pictures the ``points-project`` and ``video-mosaic`` commands write.

The picture itself stays pixel for pixel what the model sees; the labels go in white bands around it (a title
on top, one label per column above it, one per row to its left), drawn with PIL's default font.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

__all__ = ["label_picture", "save_picture"]

Box = Tuple[int, int, int, int]  # left, top, right, bottom
_PAD = 3


def label_picture(pic: Any, title: Optional[str] = None, row_labels: Sequence[str] = (),
                  column_labels: Sequence[str] = ()) -> Tuple[Any, Dict[str, Any]]:
    """``pic`` (a PIL image of equal rows × equal columns) with its labels around it, and the layout: the
    ``content`` box where ``pic`` was pasted unchanged and the box of every label drawn (``title``, ``rows``,
    ``columns``), in pixels of the returned image."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def size(text: str) -> Tuple[int, int]:
        left, top, right, bottom = measure.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    line = max([size(t)[1] for t in (title or "", *row_labels, *column_labels) if t] or [0]) + 2 * _PAD
    left = max([size(t)[0] for t in row_labels] or [-2 * _PAD]) + 2 * _PAD
    title_height = line if title else 0
    top = title_height + (line if column_labels else 0)
    width = max(left + pic.width, (size(title)[0] + 2 * _PAD) if title else 0)
    canvas = Image.new("RGB", (width, top + pic.height), "white")
    canvas.paste(pic.convert("RGB"), (left, top))
    draw = ImageDraw.Draw(canvas)
    layout: Dict[str, Any] = dict(content=(left, top, left + pic.width, top + pic.height), title=None, rows=[],
                                  columns=[])

    def put(text: str, x: int, y: int) -> Box:
        draw.text((x, y), text, fill="black", font=font)
        box = draw.textbbox((x, y), text, font=font)
        return tuple(int(v) for v in box)  # type: ignore[return-value]

    if title:
        layout["title"] = put(title, _PAD, _PAD)
    if column_labels:
        cell = pic.width / len(column_labels)
        for i, text in enumerate(column_labels):
            w, _ = size(text)
            layout["columns"].append(put(text, int(left + (i + 0.5) * cell - w / 2), title_height + _PAD))
    if row_labels:
        cell = pic.height / len(row_labels)
        for i, text in enumerate(row_labels):
            _, h = size(text)
            layout["rows"].append(put(text, _PAD, int(top + (i + 0.5) * cell - h / 2)))
    return canvas, layout


def save_picture(pic: Any, path: Any, overwrite: bool = False) -> None:
    """Write ``pic`` to ``path`` under the one write policy (atomic; no existing file or link replaced without
    ``overwrite``); the format follows the suffix (PNG when it names none)."""
    from pathlib import Path

    from PIL import Image

    from ..checkpoint import atomic_write

    image_format = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    atomic_write(path, lambda f: pic.save(f, format=image_format), overwrite=overwrite)
