"""Face-mesh topology and drawing style as plain data.

MediaPipe's face mesh has 478 points: 468 mesh points plus 10 iris points (468-472 right iris,
473-477 left iris; 468 and 473 are the pupil centres). "Left" and "right" are the person's own
sides, as MediaPipe names them.

The edge lists below were generated once from mediapipe 0.10.21
(`mediapipe.python.solutions.face_mesh_connections`), keeping that release's iteration order (the
official drawing draws edges in this order, which only matters where lines of two colours overlap).
Newer mediapipe releases no longer ship these sets, so they live here as data.

Colours are the official EchoMimic FaceMeshVisualizer colours, as channel triples written into the
image array as is (the condition images the weights were trained on).
"""

from __future__ import annotations

Edge = tuple[int, int]
Colour = tuple[int, int, int]

NUM_MESH_POINTS = 468
NUM_POINTS = 478  # mesh + iris (refined landmarks)

LEFT_EYE: tuple[Edge, ...] = (
    (374, 380),
    (390, 373),
    (249, 390),
    (385, 384),
    (373, 374),
    (263, 466),
    (387, 386),
    (381, 382),
    (384, 398),
    (466, 388),
    (386, 385),
    (388, 387),
    (263, 249),
    (380, 381),
    (398, 362),
    (382, 362),
)
RIGHT_EYE: tuple[Edge, ...] = (
    (154, 155),
    (33, 7),
    (246, 161),
    (159, 158),
    (144, 145),
    (173, 133),
    (158, 157),
    (163, 144),
    (153, 154),
    (7, 163),
    (161, 160),
    (157, 173),
    (33, 246),
    (160, 159),
    (145, 153),
    (155, 133),
)
LEFT_EYEBROW: tuple[Edge, ...] = (
    (334, 296),
    (276, 283),
    (293, 334),
    (295, 285),
    (296, 336),
    (282, 295),
    (283, 282),
    (300, 293),
)
RIGHT_EYEBROW: tuple[Edge, ...] = ((46, 53), (66, 107), (52, 65), (53, 52), (63, 105), (70, 63), (65, 55), (105, 66))
LEFT_IRIS: tuple[Edge, ...] = ((476, 477), (475, 476), (477, 474), (474, 475))
RIGHT_IRIS: tuple[Edge, ...] = ((469, 470), (472, 469), (471, 472), (470, 471))

# Lips as eight chains (outer/inner x top/bottom x left/right), each with its own colour.
LIPS_OUTER_BOTTOM_LEFT: tuple[Edge, ...] = ((61, 146), (146, 91), (91, 181), (181, 84), (84, 17))
LIPS_OUTER_BOTTOM_RIGHT: tuple[Edge, ...] = ((17, 314), (314, 405), (405, 321), (321, 375), (375, 291))
LIPS_INNER_BOTTOM_LEFT: tuple[Edge, ...] = ((78, 95), (95, 88), (88, 178), (178, 87), (87, 14))
LIPS_INNER_BOTTOM_RIGHT: tuple[Edge, ...] = ((14, 317), (317, 402), (402, 318), (318, 324), (324, 308))
LIPS_OUTER_TOP_LEFT: tuple[Edge, ...] = ((61, 185), (185, 40), (40, 39), (39, 37), (37, 0))
LIPS_OUTER_TOP_RIGHT: tuple[Edge, ...] = ((0, 267), (267, 269), (269, 270), (270, 409), (409, 291))
LIPS_INNER_TOP_LEFT: tuple[Edge, ...] = ((78, 191), (191, 80), (80, 81), (81, 82), (82, 13))
LIPS_INNER_TOP_RIGHT: tuple[Edge, ...] = ((13, 312), (312, 311), (311, 310), (310, 415), (415, 308))

RIGHT_PUPIL = 468
LEFT_PUPIL = 473
NOSE_TIP = 4
# The nose group used for part-aware alignment (bridge, tip, wings).
NOSE_POINTS: tuple[int, ...] = (1, 4, 5, 44, 45, 51, 220, 274, 275, 281, 440)
LEFT_IRIS_POINTS: tuple[int, ...] = (473, 474, 475, 476, 477)
RIGHT_IRIS_POINTS: tuple[int, ...] = (468, 469, 470, 471, 472)

# Points that hardly move with expressions (forehead, temples, upper cheeks, nose bridge, eye
# corners): used to measure head pose. The jaw and chin are left out since they move with the mouth.
RIGID_POINTS: tuple[int, ...] = (
    10,
    151,
    9,
    8,
    168,
    6,
    197,
    195,
    109,
    338,
    67,
    297,
    103,
    332,
    54,
    284,
    21,
    251,
    127,
    356,
    234,
    454,
    93,
    323,
    33,
    133,
    362,
    263,
)

# Official FaceMeshVisualizer colours.
LEFT_EYE_COLOUR: Colour = (180, 200, 10)
RIGHT_EYE_COLOUR: Colour = (10, 200, 180)
LEFT_EYEBROW_COLOUR: Colour = (180, 220, 10)
RIGHT_EYEBROW_COLOUR: Colour = (10, 220, 180)
LEFT_PUPIL_COLOUR: Colour = (250, 200, 10)
RIGHT_PUPIL_COLOUR: Colour = (10, 200, 250)
NOSE_COLOUR: Colour = (200, 200, 200)
LIPS_COLOURS: tuple[tuple[tuple[Edge, ...], Colour], ...] = (
    (LIPS_OUTER_BOTTOM_LEFT, (10, 180, 20)),
    (LIPS_OUTER_BOTTOM_RIGHT, (20, 10, 180)),
    (LIPS_INNER_BOTTOM_LEFT, (100, 100, 30)),
    (LIPS_INNER_BOTTOM_RIGHT, (100, 150, 50)),
    (LIPS_OUTER_TOP_LEFT, (20, 80, 100)),
    (LIPS_OUTER_TOP_RIGHT, (80, 100, 20)),
    (LIPS_INNER_TOP_LEFT, (120, 100, 200)),
    (LIPS_INNER_TOP_RIGHT, (150, 120, 100)),
)

LINE_THICKNESS = 2
SQUARE_HALF_WIDTH = 3  # pupils and nose tip are 6x6 squares
OFFICIAL_CANVAS_SIZE = 512  # the official draws on a 512x512 canvas, then resizes


def edge_points(edges: tuple[Edge, ...]) -> tuple[int, ...]:
    """Sorted distinct point indices used by `edges`."""
    return tuple(sorted({i for edge in edges for i in edge}))


LIPS_EDGES: tuple[Edge, ...] = tuple(edge for chain, _ in LIPS_COLOURS for edge in chain)
