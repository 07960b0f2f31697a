"""The vocabulary of vivid's synthetic world: shapes, colours and motions.

One source of truth for the synthetic data generator (data_loaders.synthetic), the synthetic text-alignment
metric (vivid.metrics) and the tiny model's tokenizer, which is trained on these words.
"""

from __future__ import annotations

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 220, 230),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
MOTIONS: dict[str, tuple[float, float]] = {  # direction of motion (dx, dy) per unit time
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
SIZES: tuple[str, ...] = ("small", "large")


def captions_for(color: str, shape: str, motion: str | None, size: str | None = None) -> list[str]:
    """Three local captions, short to long, as VIVID-10M gives three lengths per entity."""
    short = f"a {color} {shape}"
    if motion is None:
        medium = f"a {size or 'small'} {color} {shape}"
        long = f"a {size or 'small'} {color} {shape} on a textured background"
    else:
        medium = f"a {color} {shape} moving {motion}"
        long = f"a {size or 'small'} {color} {shape} moving {motion} across a textured background"
    return [short, medium, long]


def corpus() -> list[str]:
    """Every caption of the synthetic world plus the deletion caption: what the tiny tokenizer is trained on."""
    from vivid.constants import DELETE_CAPTION

    lines = [DELETE_CAPTION]
    for color in COLORS:
        for shape in SHAPES:
            for size in SIZES:
                lines += captions_for(color, shape, None, size)
                for motion in MOTIONS:
                    lines += captions_for(color, shape, motion, size)
    return lines
