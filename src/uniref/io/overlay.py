"""Draw masks on images: palette-coloured fills, outlines, object ids, a legend and a caption.

Used for PNG overlays of image results and for the frames of overlay videos. Text uses PIL's default
font (bundled with Pillow), so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from .images import ImageInput, load_image
from .masks import MaskError, masks_to_labels, validate_mask_size
from .palette import davis_palette

__all__ = ["overlay_masks"]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_box(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, fill, background) -> None:
    left, top, right, bottom = draw.textbbox(xy, text, font=font)
    pad = 2
    draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=background)
    draw.text(xy, text, font=font, fill=fill)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            trial = f"{line} {word}".strip()
            if line and draw.textlength(trial, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def _anchor(mask: np.ndarray) -> tuple[int, int]:
    """A point inside the object near its centroid (the centroid itself may lie outside a concave shape)."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    nearest = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(xs[nearest]), int(ys[nearest])


def overlay_masks(
    image: ImageInput,
    masks: np.ndarray | Mapping[int, np.ndarray] | None = None,
    *,
    alpha: float = 0.5,
    outline: int = 2,
    show_ids: bool = True,
    legend: Mapping[int, str] | None = None,
    caption: str | None = None,
    font_size: int | None = None,
) -> np.ndarray:
    """Colour the objects of ``masks`` on ``image``.

    Args:
        image: anything :func:`~uniref.io.images.load_image` reads; ``[H, W, 3]`` after loading.
        masks: an ``[H, W]`` label map (0 = background, ids 1..255) or ``{id: [H, W] bool}``;
            ``None`` draws only the texts.
        alpha: opacity of the fill colour.
        outline: outline width in pixels (0: none); drawn in the object's colour at full opacity.
        show_ids: write each visible object's id at a point inside it.
        legend: ``{id: text}`` (e.g. the referring sentences) listed top-left with colour swatches.
        caption: a text drawn in a band at the bottom, wrapped to the image width.
        font_size: text size in pixels; by default about 1/25 of the shorter side (at least 10).

    Returns:
        ``[H, W, 3]`` uint8 RGB.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in 0..1, got {alpha}")
    rgb = load_image(image)
    height, width = rgb.shape[:2]
    if masks is None:
        labels = np.zeros((height, width), dtype=np.uint8)
    elif isinstance(masks, Mapping):
        labels = masks_to_labels(masks, (height, width)) if masks else np.zeros((height, width), np.uint8)
    else:
        labels = np.asarray(masks)
        if labels.dtype == np.bool_:
            labels = labels.astype(np.uint8)
        if labels.ndim != 2:
            raise MaskError(f"overlay masks must be an [H, W] label map; got shape {tuple(labels.shape)}")
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise MaskError(f"palette ids out of range: values {labels.min()}..{labels.max()}, allowed 0..255")
    validate_mask_size(labels, (height, width), what="overlay mask", frame_what="the image")
    labels = labels.astype(np.int64)
    palette = davis_palette().astype(np.float32)

    out = rgb.astype(np.float32)
    foreground = labels > 0
    out[foreground] = (1.0 - alpha) * out[foreground] + alpha * palette[labels[foreground]]
    ids = [int(v) for v in np.unique(labels) if v != 0]
    if outline > 0 and ids:
        # A pixel is on an outline when a neighbour within `outline` pixels carries another label.
        footprint = ndimage.generate_binary_structure(2, 1)
        grown = ndimage.grey_dilation(labels, footprint=ndimage.iterate_structure(footprint, outline))
        shrunk = ndimage.grey_erosion(labels, footprint=ndimage.iterate_structure(footprint, outline))
        edge = foreground & ((grown != labels) | (shrunk != labels))
        out[edge] = palette[labels[edge]]
    result = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))

    if not (show_ids and ids) and not legend and not caption:
        return np.asarray(result).copy()
    size = font_size or max(10, round(min(height, width) / 25))
    font = _font(size)
    draw = ImageDraw.Draw(result)
    if show_ids:
        for obj_id in ids:
            x, y = _anchor(labels == obj_id)
            text = str(obj_id)
            text_w = draw.textlength(text, font=font)
            xy = (min(max(x - text_w / 2, 2), max(width - text_w - 2, 2)), min(max(y - size / 2, 2), height - size))
            _text_box(draw, xy, text, font, fill=(255, 255, 255), background=(0, 0, 0))
    if legend:
        y = 2.0
        for obj_id, text in legend.items():
            color = tuple(int(c) for c in davis_palette()[int(obj_id) % 256])
            draw.rectangle((2, y + 1, 2 + size - 2, y + size - 1), fill=color, outline=(255, 255, 255))
            lines = _wrap(draw, f"{obj_id}: {text}", font, width - size - 8)
            for line in lines:
                _text_box(draw, (size + 4, y), line, font, fill=(255, 255, 255), background=(0, 0, 0))
                y += size * 1.3
    if caption:
        lines = _wrap(draw, caption, font, width - 8)
        band = int(len(lines) * size * 1.3 + 6)
        top = max(height - band, 0)
        shade = Image.new("RGBA", (width, height - top), (0, 0, 0, 160))
        band_image = Image.alpha_composite(result.crop((0, top, width, height)).convert("RGBA"), shade)
        result.paste(band_image.convert("RGB"), (0, top))
        draw = ImageDraw.Draw(result)
        y = top + 3.0
        for line in lines:
            draw.text((4, y), line, font=font, fill=(255, 255, 255))
            y += size * 1.3
    return np.asarray(result).copy()

