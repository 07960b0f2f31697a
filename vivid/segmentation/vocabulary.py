"""Everyday things that move or can be added, modified or removed in footage (VIVID-10M's entities are objects,
people and animals): the data build's default concept prompts and the tiny Grounding DINO's word list."""

EVERYDAY_OBJECTS = (
    "person", "dog", "cat", "horse", "bird", "car", "bicycle", "motorcycle", "bus", "truck", "boat", "ball",
    "bag", "bottle", "cup", "chair", "umbrella", "phone", "hat", "flower",
)
