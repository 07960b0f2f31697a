"""What the user points at: clicks, boxes or words on one frame of a video, parsed and checked against the video
before any model is loaded (each problem one line naming the value)."""

from __future__ import annotations

from dataclasses import dataclass, field


class PromptError(ValueError):
    """A prompt that cannot be used on this video; the message is one line naming the value."""


@dataclass
class Prompt:
    frame: int = 0  # the frame the clicks and box are on (words: the frame whose instances are ranked)
    points: list[tuple[float, float]] = field(default_factory=list)  # positive clicks (x, y) in pixels
    negatives: list[tuple[float, float]] = field(default_factory=list)  # negative clicks
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # (x0, y0, x1, y1) in pixels
    text: str | None = None  # words: every instance of them
    instance: int | None = None  # words: only the K-th instance by score (1 = the best)
    max_instances: int | None = None  # words: at most this many instances, the best by score

    @property
    def is_text(self) -> bool:
        return bool(self.text)

    def describe(self) -> str:
        if self.is_text:
            return repr(self.text)
        parts = [f"{len(self.points)} point(s)"] if self.points else []
        parts += [f"{len(self.negatives)} negative point(s)"] if self.negatives else []
        parts += [f"{len(self.boxes)} box(es)"] if self.boxes else []
        return ", ".join(parts) + f" on frame {self.frame}"


def parse_numbers(text: str, count: int, what: str) -> tuple[float, ...]:
    """'X,Y' (count 2) or 'X0,Y0,X1,Y1' (count 4) -> floats; a PromptError naming `what` and the text otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != count:
        shape = "X,Y" if count == 2 else "X0,Y0,X1,Y1"
        raise PromptError(f"{what} {text!r} is not {shape} (numbers in pixels)")
    return values


def check_prompt(prompt: Prompt, num_frames: int, height: int, width: int) -> None:
    """Every problem of `prompt` on a video of `num_frames` frames of `width` x `height`, as a PromptError."""
    clicks = prompt.points or prompt.negatives or prompt.boxes
    if not prompt.is_text and not (prompt.points or prompt.boxes):
        what = "only negative points" if prompt.negatives else "no prompt"
        raise PromptError(f"{what}: give --point X,Y, --box X0,Y0,X1,Y1 or --text WORDS")
    if prompt.is_text and clicks:
        raise PromptError("give either --text or points/boxes, not both")
    if not 0 <= prompt.frame < num_frames:
        last = num_frames - 1
        raise PromptError(f"frame {prompt.frame} is past the video's end: it has {num_frames} frames (0-{last})")
    for kind, pts in (("point", prompt.points), ("negative point", prompt.negatives)):
        for x, y in pts:
            if not (0 <= x < width and 0 <= y < height):
                raise PromptError(f"{kind} ({x:g}, {y:g}) is outside the {width}x{height} frame")
    for x0, y0, x1, y1 in prompt.boxes:
        box = f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        if x1 <= x0 or y1 <= y0:
            raise PromptError(f"{box} is inverted or empty: give X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise PromptError(f"{box} is outside the {width}x{height} frame")
    if prompt.instance is not None and prompt.instance < 1:
        raise PromptError(f"--instance {prompt.instance}: instances count from 1 (the best by score)")
    if prompt.max_instances is not None and prompt.max_instances < 1:
        raise PromptError(f"--max-instances {prompt.max_instances} must be at least 1")
