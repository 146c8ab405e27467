#!/usr/bin/env python3
"""Write *hand-made* digit images, the way people draw or photograph a digit, to score a digits model on them.

The embedded UCI digits are 8×8 ink counts, light on dark, filling the frame. A person's digit is nothing like
that: dark ink on light paper, a margin, off-centre, any size, grey or colour, sometimes noisy or a JPEG. This
script makes such images from two sources:

* **strokes** (``draw_digit``): each digit is a few polylines and arcs (a ``0`` is an ellipse, a ``4`` three
  lines …) drawn with a round pen of random thickness (3-14 % of the digit's height), a random slant (±0.3),
  random wobble of every control point, a random aspect, size and position on a canvas of random size with
  margins; light or dark ground (about two thirds dark on light), grey or coloured ink; a quarter get Gaussian
  noise, a quarter are saved as low-quality JPEG;
* **fonts** (``font_digit``): the digit typed in a TrueType font found on the machine (DejaVu under
  ``/usr/share/fonts`` when present; Pillow's built-in font otherwise), same placement and colour draws.

Output: ``<out>/<digit>/<source>_<NNN>.(png|jpg)``, the image-folder tree ``unireplknet eval --data`` reads.
The folder is written under a temporary name and renamed at the end.

Usage::

    python scripts/make_drawn_digits.py --out runs/drawn-digits [--per-class 40] [--font-share 0.25] [--seed 0]
    unireplknet eval runs/digits/deploy.safetensors --data runs/drawn-digits
"""
from __future__ import annotations

import argparse
import io
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Point = Tuple[float, float]


def _arc(cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, n: int = 24) -> List[Point]:
    """Points of an elliptic arc (y grows downwards, so increasing angles turn clockwise on screen)."""
    t = np.radians(np.linspace(start_deg, end_deg, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in t]


#: Each digit as strokes (lists of points) in a unit box: x right, y down, both 0…1.
DIGIT_STROKES = {
    0: [_arc(0.5, 0.5, 0.45, 0.5, 0, 360, 36)],
    1: [[(0.25, 0.22), (0.55, 0.0), (0.55, 1.0)]],
    2: [_arc(0.5, 0.3, 0.42, 0.3, 180, 400) + [(0.05, 1.0), (0.95, 1.0)]],
    3: [_arc(0.5, 0.26, 0.38, 0.26, 200, 450), _arc(0.5, 0.74, 0.45, 0.26, 270, 520)],
    4: [[(0.7, 1.0), (0.7, 0.0), (0.0, 0.68), (1.0, 0.68)]],
    5: [[(0.9, 0.0), (0.2, 0.0), (0.14, 0.44)] + _arc(0.5, 0.68, 0.45, 0.32, 220, 510)],
    6: [[(0.8, 0.0), (0.45, 0.18), (0.15, 0.5), (0.07, 0.7)] + _arc(0.5, 0.7, 0.43, 0.3, 180, 540)],
    7: [[(0.0, 0.0), (1.0, 0.0), (0.35, 1.0)]],
    8: [_arc(0.5, 0.24, 0.36, 0.24, 0, 360, 30), _arc(0.5, 0.73, 0.45, 0.27, 0, 360, 30)],
    9: [_arc(0.5, 0.3, 0.45, 0.3, 0, 360, 30), [(0.95, 0.3), (0.85, 1.0)]],
}


def _colours(rng: np.random.Generator, dark_on_light: bool, colour: bool) -> Tuple[tuple, tuple]:
    """(ground, ink) colours: paper-like light and pen-like dark (or the reverse), grey or coloured."""
    light = int(rng.integers(190, 256))
    dark = int(rng.integers(0, 70))
    ground, ink = (light, dark) if dark_on_light else (dark, light)
    if not colour:
        return (ground,) * 3, (ink,) * 3
    tint = rng.integers(-40, 41, size=3)
    return (tuple(int(np.clip(ground + t // 3, 0, 255)) for t in tint),
            tuple(int(np.clip(ink + t, 0, 255)) for t in tint[::-1]))


def _finish(img: Image.Image, rng: np.random.Generator, noise_sigma: float, jpeg_quality: Optional[int],
            grey: bool) -> Image.Image:
    if noise_sigma > 0:
        a = np.asarray(img, dtype=np.float32)
        a = a + rng.normal(0.0, noise_sigma, size=a.shape[:2])[..., None]
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if grey:
        img = img.convert("L")
    if jpeg_quality is not None:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=jpeg_quality)
        buf.seek(0)
        img = Image.open(buf)
        img.load()
    return img


def _placement(rng: np.random.Generator, aspect: float) -> Tuple[int, int, int, int, int, int]:
    """(canvas width, canvas height, box left, box top, box width, box height) with margins and an offset."""
    canvas_w, canvas_h = int(rng.integers(48, 320)), int(rng.integers(48, 320))
    box_h = int(min(canvas_h, canvas_w / max(aspect, 0.3)) * rng.uniform(0.35, 0.8))
    box_w = max(2, int(box_h * aspect))
    left = int(rng.integers(0, max(1, canvas_w - box_w)))
    top = int(rng.integers(0, max(1, canvas_h - box_h)))
    return canvas_w, canvas_h, left, top, box_w, box_h


def draw_digit(digit: int, rng: np.random.Generator, clear: bool = False) -> Image.Image:
    """One digit drawn with pen strokes, as a person would (see the module docstring for the random draws).

    ``clear=True`` draws a plain one: black-ish ink on white-ish paper, medium pen, little slant, no noise.
    """
    aspect = rng.uniform(0.55, 0.8) if digit != 1 else rng.uniform(0.35, 0.5)
    canvas_w, canvas_h, left, top, box_w, box_h = _placement(rng, aspect)
    slant = rng.uniform(-0.1, 0.1) if clear else rng.uniform(-0.3, 0.3)
    wobble = 0.01 if clear else 0.03
    thickness = max(1, int(round(box_h * (rng.uniform(0.07, 0.11) if clear else rng.uniform(0.03, 0.14)))))
    dark_on_light = True if clear else bool(rng.random() < 0.65)
    ground, ink = _colours(rng, dark_on_light, colour=(not clear) and bool(rng.random() < 0.4))
    img = Image.new("RGB", (canvas_w, canvas_h), ground)
    draw = ImageDraw.Draw(img)
    for stroke in DIGIT_STROKES[digit]:
        # A hand wobbles slowly: noise smoothed along the stroke (amplitude kept), not a jitter at every point.
        width = min(len(stroke), 9)
        kernel = np.ones(width) / math.sqrt(width)
        shake = np.stack([np.convolve(rng.normal(0, wobble, len(stroke) + width - 1), kernel, "valid")
                          for _ in range(2)], axis=1)
        pts = []
        for (x, y), (dx, dy) in zip(stroke, shake):
            x, y = x + dx, y + dy
            x = x + slant * (0.5 - y)  # a forward slant leans the top to the right
            pts.append((left + x * box_w, top + y * box_h))
        draw.line(pts, fill=ink, width=thickness, joint="curve")
        r = thickness / 2
        for px, py in (pts[0], pts[-1]):  # round pen ends
            draw.ellipse((px - r, py - r, px + r, py + r), fill=ink)
    if clear:
        return _finish(img, rng, 0.0, None, grey=True)
    noisy = rng.random()
    return _finish(img, rng, float(rng.uniform(4, 14)) if noisy < 0.25 else 0.0,
                   int(rng.integers(25, 70)) if noisy > 0.75 else None, grey=bool(rng.random() < 0.5))


def available_fonts() -> List[str]:
    """TrueType fonts of the machine (DejaVu when installed), sorted; empty when there are none."""
    found = sorted(str(p) for p in Path("/usr/share/fonts").rglob("DejaVu*.ttf")) if Path("/usr/share/fonts").is_dir() else []
    return [f for f in found if "ExtraLight" not in f]


def font_digit(digit: int, rng: np.random.Generator, fonts: Sequence[str]) -> Image.Image:
    """One digit typed in a font (one of ``fonts``, or Pillow's built-in one), placed and coloured at random."""
    size = int(rng.integers(24, 160))
    font = ImageFont.truetype(str(rng.choice(fonts)), size) if fonts else ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(str(digit))
    w, h = right - left, bottom - top
    margin_x, margin_y = int(w * rng.uniform(0.1, 1.5)) + 2, int(h * rng.uniform(0.1, 1.0)) + 2
    canvas_w, canvas_h = w + 2 * margin_x, h + 2 * margin_y
    ground, ink = _colours(rng, bool(rng.random() < 0.65), colour=bool(rng.random() < 0.4))
    img = Image.new("RGB", (canvas_w, canvas_h), ground)
    x = int(rng.integers(0, 2 * margin_x - 1)) - left
    y = int(rng.integers(0, 2 * margin_y - 1)) - top
    ImageDraw.Draw(img).text((x, y), str(digit), fill=ink, font=font)
    noisy = rng.random()
    return _finish(img, rng, float(rng.uniform(4, 14)) if noisy < 0.25 else 0.0,
                   int(rng.integers(25, 70)) if noisy > 0.75 else None, grey=bool(rng.random() < 0.5))


def write_drawn_digits(out: Path, per_class: int = 40, font_share: float = 0.25, seed: int = 0) -> Path:
    """Write ``per_class`` images of every digit (``font_share`` of them typed) to ``out/<digit>/``; returns out."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it or pick another --out")
    fonts = available_fonts()
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent if out.parent.is_dir() else None))
    try:
        for digit in range(10):
            folder = tmp / str(digit)
            folder.mkdir()
            rng = np.random.default_rng([seed, digit])
            n_font = int(round(per_class * font_share))
            for i in range(per_class):
                img = font_digit(digit, rng, fonts) if i < n_font else draw_digit(digit, rng)
                source = "font" if i < n_font else "strokes"
                suffix = "jpg" if img.format == "JPEG" else "png"
                img.save(folder / f"{source}_{i:03d}.{suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp), str(out))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="new folder to write <digit>/<image> into")
    p.add_argument("--per-class", type=int, default=40, help="images per digit (40)")
    p.add_argument("--font-share", type=float, default=0.25, help="share of the images typed in a font (0.25)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = write_drawn_digits(Path(args.out), args.per_class, args.font_share, args.seed)
    fonts = available_fonts()
    print(f"wrote {10 * args.per_class} images to {out} (fonts: {len(fonts) or 'Pillow built-in'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
