"""Face detection and face alignment measured on frames composed from a folder of face crops.

FER Lab ships no photos of people, so the benchmark builds its own frames: face
crops (FER2013's 48x48 faces locally, synthetic faces in tests) pasted (by
:func:`fertools.synthetic.paste_face`, FER Lab's one face paster) into
cluttered, procedurally drawn backgrounds at known places, sizes and in-plane
rotations, under changed lighting, several per frame, and some frames with no
face at all. The ground truth is where each face was pasted.

* :func:`make_frames` composes the frames; :func:`detection_benchmark` runs
  detectors on them and counts matches (recall, precision, per size and angle).
* :func:`alignment_benchmark` runs a :class:`~fertools.recognize.Recognizer`
  on single rotated faces with and without eye alignment and compares its
  accuracy against the folder's class names.

Example::

    from fertools.detection_bench import detection_benchmark, make_frames
    from fertools.faces import make_detector

    frames = make_frames("data/fer2013/val", n_frames=300)
    table = detection_benchmark({"haar": make_detector("haar")}, frames)
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from fertools.constants import IMAGE_SIZE
from fertools.faces import Box, FaceDetector, find_faces
from fertools.preprocess import to_face
from fertools.synthetic import paste_face

if TYPE_CHECKING:  # only for the annotation: composing frames needs no model
    from fertools.recognize import Recognizer

#: Image files read from a face folder.
FACE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: A face crop larger than this on any side is refused: face folders hold small crops.
MAX_FACE_SIDE = 1024


@dataclass(frozen=True)
class PastedFace:
    """Ground truth for one face of a benchmark frame."""

    box: Box  # the upright square the face crop covered before rotation, frame pixels
    angle: float  # in-plane rotation, degrees, counter-clockwise
    label: str | None  # the face's class folder, None for a flat folder


@dataclass(frozen=True)
class BenchFrame:
    """One benchmark frame: BGR ``uint8`` pixels and the faces pasted into it."""

    frame: np.ndarray
    faces: tuple[PastedFace, ...]


def load_faces(
    folder: str | os.PathLike, limit: int | None = None, seed: int = 0
) -> tuple[np.ndarray, list[str | None]]:
    """Face crops from ``folder``: ``uint8`` (N, 48, 48) grey faces and their labels.

    ``folder/<class>/*.jpg`` (FER2013's image release) labels each face with
    its subfolder; image files directly in ``folder`` get the label None.
    ``limit`` draws that many at random (seeded). Raises ``ValueError`` if the
    folder holds no readable face or a face larger than ``MAX_FACE_SIDE``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder of face images.")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in FACE_SUFFIXES and p.is_file())
    if limit is not None and len(paths) > limit:
        chosen = np.random.default_rng(seed).choice(len(paths), limit, replace=False)
        paths = [paths[i] for i in sorted(chosen)]
    faces, labels = [], []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            continue
        if max(image.shape) > MAX_FACE_SIDE:
            raise ValueError(f"{path} is larger than {MAX_FACE_SIDE} pixels; expected face crops.")
        faces.append(to_face(image, IMAGE_SIZE))
        labels.append(path.parent.name if path.parent != root else None)
    if not faces:
        raise ValueError(f"{root} holds no readable face images ({', '.join(FACE_SUFFIXES)}).")
    return np.stack(faces), labels


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A cluttered BGR float32 scene: a lit wall, blotches, shapes and lines, but no face."""
    low = rng.uniform(30, 220, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
    scene = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = cv2.resize(
        rng.normal(0, 25, size=(height // 8, width // 8, 3)).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_LINEAR,
    )
    scene += texture
    for _ in range(rng.integers(4, 14)):
        colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        kind = rng.integers(3)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if kind == 0:
            w, h = int(rng.integers(10, width // 2)), int(rng.integers(10, height // 2))
            cv2.rectangle(scene, (x, y), (x + w, y + h), colour, -1)
        elif kind == 1:
            axes = (int(rng.integers(5, 120)), int(rng.integers(5, 120)))
            cv2.ellipse(scene, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(scene, (x, y), end, colour, int(rng.integers(1, 8)))
    return scene


def _tint(rng: np.random.Generator) -> np.ndarray:
    # Skin-like BGR gains that keep the luminance (0.114 B + 0.587 G + 0.299 R = 1).
    red = rng.uniform(1.0, 1.25)
    blue = rng.uniform(0.7, 1.0)
    green = (1.0 - 0.299 * red - 0.114 * blue) / 0.587
    return np.array([blue, green, red], dtype=np.float32)


def _light(rng: np.random.Generator, scene: np.ndarray) -> np.ndarray:
    """Lighting changes over the whole frame: exposure, gamma, light from one side, sensor noise."""
    height, width = scene.shape[:2]
    gain = rng.uniform(0.55, 1.35)
    gamma = rng.uniform(0.65, 1.6)
    direction = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(direction) * (xs / width - 0.5) + np.sin(direction) * (ys / height - 0.5)) * 2
    side_light = 1.0 + rng.uniform(0.0, 0.45) * ramp
    lit = 255.0 * (np.clip(scene, 0, 255) / 255.0) ** gamma * gain * side_light[..., None]
    lit += rng.normal(0, rng.uniform(0, 6), size=lit.shape).astype(np.float32)
    return np.clip(np.rint(lit), 0, 255).astype(np.uint8)


def make_frames(
    folder: str | os.PathLike,
    n_frames: int = 200,
    seed: int = 0,
    size: tuple[int, int] = (640, 480),
    sides: tuple[int, int] = (40, 300),
    max_angle: float = 30.0,
    max_faces: int = 4,
    empty_fraction: float = 0.2,
) -> list[BenchFrame]:
    """``n_frames`` benchmark frames of ``size`` (width, height) built from the faces in ``folder``.

    Each frame holds no face (``empty_fraction`` of them) or 1..``max_faces``
    faces that do not overlap, each ``sides`` px (log-uniform), rotated by up
    to ``max_angle`` degrees either way, tinted, then the whole frame is lit
    unevenly. The same arguments give the same frames. Faces come from
    :func:`load_faces`.
    """
    rng = np.random.default_rng(seed)
    faces, labels = load_faces(folder)
    width, height = size
    frames = []
    for _ in range(n_frames):
        scene = _background(rng, height, width)
        wanted = 0 if rng.random() < empty_fraction else int(rng.integers(1, max_faces + 1))
        placed: list[PastedFace] = []
        for _attempt in range(wanted * 20):
            if len(placed) == wanted:
                break
            side = int(round(np.exp(rng.uniform(np.log(sides[0]), np.log(sides[1])))))
            angle = float(rng.uniform(-max_angle, max_angle))
            reach = side * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle)))) / 2
            if 2 * reach + 2 > min(width, height):
                continue
            cx = float(rng.uniform(reach + 1, width - reach - 1))
            cy = float(rng.uniform(reach + 1, height - reach - 1))
            outer = (cx - reach, cy - reach, cx + reach, cy + reach)
            if any(_overlaps(outer, face.box, face.angle) for face in placed):
                continue
            index = int(rng.integers(len(faces)))
            paste_face(scene, faces[index], (cx, cy), side, angle, _tint(rng))
            box = (int(round(cx - side / 2)), int(round(cy - side / 2)), side, side)
            placed.append(PastedFace(box, angle, labels[index]))
        frames.append(BenchFrame(_light(rng, scene), tuple(placed)))
    return frames


def _overlaps(outer: tuple[float, ...], box: Box, angle: float) -> bool:
    x, y, side, _ = box
    cx, cy = x + side / 2, y + side / 2
    reach = side * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle)))) / 2
    return not (
        outer[2] < cx - reach or outer[0] > cx + reach or outer[3] < cy - reach or outer[1] > cy + reach
    )


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    overlap = width * height
    return overlap / (a[2] * a[3] + b[2] * b[3] - overlap)


def match(found: Sequence[Box], truth: Sequence[Box], min_iou: float = 0.3) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, highest IoU first: ``(found index, truth index)`` pairs."""
    pairs = sorted(
        ((iou(f, t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth)), reverse=True
    )
    used_found, used_truth, matched = set(), set(), []
    for overlap, i, j in pairs:
        if overlap < min_iou:
            break
        if i in used_found or j in used_truth:
            continue
        used_found.add(i)
        used_truth.add(j)
        matched.append((i, j))
    return matched


#: Face side bins (px) and rotation bins (degrees, absolute) for the per-bin recall.
SIDE_BINS = ((40, 80), (80, 150), (150, 301))
#: An unmatched box overlapping every pasted face by less than this (IoU) lands on no face.
OFF_FACE_IOU = 0.1
ANGLE_BINS = ((0.0, 10.0), (10.0, 20.0), (20.0, 30.01))


def detection_benchmark(
    detectors: Mapping[str, FaceDetector], frames: Sequence[BenchFrame], min_iou: float = 0.3
) -> dict[str, dict]:
    """Recall, precision and time of each detector on ``frames``, by name.

    A found box is a true positive when it overlaps a pasted face's square by
    at least ``min_iou`` (IoU, one match per face); detectors draw their boxes
    a little differently from a crop's edges, hence the loose default. Per
    detector: ``recall``, ``precision``, counts (``true_positives``,
    ``false_positives``, ``missed``), ``false_positives_on_empty_frames``,
    ``mean_iou`` of matches, ``boxes_on_no_face`` (false positives that overlap no pasted face
    at all: a false box, as opposed to a face framed too differently from its crop to match),
    ``recall_by_side`` and ``recall_by_angle`` (bins
    :data:`SIDE_BINS`, :data:`ANGLE_BINS`) and ``ms_per_frame_p50``.
    """
    table = {}
    for name, detector in detectors.items():
        true_positive = false_positive = missed = empty_false = off_face = 0
        overlaps, seconds = [], []
        hits_by_side = {bin_: [0, 0] for bin_ in SIDE_BINS}
        hits_by_angle = {bin_: [0, 0] for bin_ in ANGLE_BINS}
        for bench in frames:
            start = time.perf_counter()
            found = [d.box for d in find_faces(detector, bench.frame)]
            seconds.append(time.perf_counter() - start)
            truth = [face.box for face in bench.faces]
            pairs = match(found, truth, min_iou)
            hit = {j for _, j in pairs}
            true_positive += len(pairs)
            false_positive += len(found) - len(pairs)
            matched = {i for i, _ in pairs}
            off_face += sum(
                1
                for i, box in enumerate(found)
                if i not in matched and all(iou(box, face) < OFF_FACE_IOU for face in truth)
            )
            missed += len(truth) - len(pairs)
            if not truth:
                empty_false += len(found)
            overlaps += [iou(found[i], truth[j]) for i, j in pairs]
            for j, face in enumerate(bench.faces):
                for bins, counts in ((SIDE_BINS, hits_by_side), (ANGLE_BINS, hits_by_angle)):
                    value = face.box[2] if bins is SIDE_BINS else abs(face.angle)
                    for low, high in bins:
                        if low <= value < high:
                            counts[(low, high)][0] += j in hit
                            counts[(low, high)][1] += 1
        table[name] = {
            "recall": true_positive / max(1, true_positive + missed),
            "precision": true_positive / max(1, true_positive + false_positive),
            "true_positives": true_positive,
            "false_positives": false_positive,
            "missed": missed,
            "boxes_on_no_face": off_face,
            "false_positives_on_empty_frames": empty_false,
            "empty_frames": sum(1 for bench in frames if not bench.faces),
            "mean_iou": float(np.mean(overlaps)) if overlaps else 0.0,
            "recall_by_side": {f"{lo}-{hi - 1}px": _ratio(*c) for (lo, hi), c in hits_by_side.items()},
            "recall_by_angle": {f"{lo:.0f}-{hi:.0f}deg": _ratio(*c) for (lo, hi), c in hits_by_angle.items()},
            "ms_per_frame_p50": round(float(np.median(seconds)) * 1000, 2) if seconds else 0.0,
        }
    return table


def _ratio(hits: int, total: int) -> float | None:
    return hits / total if total else None


def alignment_benchmark(
    recognizer: Recognizer,
    folder: str | os.PathLike,
    n_faces: int = 1000,
    seed: int = 0,
    side: tuple[int, int] = (120, 240),
    max_angle: float = 30.0,
    detector: FaceDetector | None = None,
) -> dict:
    """The recognizer's accuracy on single rotated faces, with and without eye alignment.

    Each of ``n_faces`` labelled faces from ``folder`` (see :func:`load_faces`)
    is pasted into its own 640x480 frame at ``side`` px, rotated by up to
    ``max_angle`` degrees; the same detection is cropped both ways and
    classified (without mirror averaging, to compare crops alone). Faces the
    detector misses count for neither. Returns accuracies overall and per
    :data:`ANGLE_BINS`, the accuracy on the upright 48x48 crops themselves
    (the model's ceiling), and the counts. Raises ``ValueError`` if the folder
    has no class subfolders the model knows.
    """
    faces, labels = load_faces(folder, limit=n_faces, seed=seed)
    known = [i for i, label in enumerate(labels) if label in recognizer.classes]
    if not known:
        raise ValueError(f"{folder} has no subfolders named after the model's classes.")
    rng = np.random.default_rng(seed)
    detector = detector or recognizer.detector
    truth = np.array([recognizer.classes.index(labels[i]) for i in known])
    upright = recognizer.classify(faces[known], tta=False).argmax(axis=1)
    rows = []  # (angle, truth, plain guess, aligned guess)
    for index, label in zip(known, truth):
        scene = _background(rng, 480, 640)
        face_side = int(rng.integers(side[0], side[1] + 1))
        angle = float(rng.uniform(-max_angle, max_angle))
        centre = (float(rng.uniform(200, 440)), float(rng.uniform(180, 300)))
        paste_face(scene, faces[index], centre, face_side, angle, _tint(rng))
        frame = _light(rng, scene)
        box = (int(centre[0] - face_side / 2), int(centre[1] - face_side / 2), face_side, face_side)
        found = find_faces(detector, frame)
        pairs = match([d.box for d in found], [box])
        if not pairs:
            continue
        detection = found[pairs[0][0]]
        crops = np.stack(
            [recognizer.crop(frame, detection, align=False), recognizer.crop(frame, detection, align=True)]
        )
        plain, aligned = recognizer.classify(crops, tta=False).argmax(axis=1)
        rows.append((abs(angle), int(label), int(plain), int(aligned)))
    table = np.array(rows, dtype=np.float64).reshape(-1, 4)

    def accuracy(column: int, low: float = 0.0, high: float = 360.0) -> float | None:
        chosen = (table[:, 0] >= low) & (table[:, 0] < high)
        return float((table[chosen, column] == table[chosen, 1]).mean()) if chosen.any() else None

    return {
        "faces": len(known),
        "detected": len(rows),
        "upright_crop_accuracy": float((upright == truth).mean()),
        "plain_accuracy": accuracy(2),
        "aligned_accuracy": accuracy(3),
        "by_angle": {
            f"{lo:.0f}-{hi:.0f}deg": {"plain": accuracy(2, lo, hi), "aligned": accuracy(3, lo, hi)}
            for lo, hi in ANGLE_BINS
        },
    }


def page_detectors() -> dict[str, FaceDetector]:
    """The four detectors the pages run by default: BlazeFace and the Haar cascade, on the Webcam and Photo pages."""
    from fertools.faces import photo_detector
    from fertools.webcam import WebcamSettings, webcam_detector

    return {
        "BlazeFace, Webcam page": webcam_detector(WebcamSettings()),
        "Haar cascade, Webcam page": webcam_detector(WebcamSettings(detector="haar")),
        "BlazeFace, Photo page": photo_detector("blazeface"),
        "Haar cascade, Photo page": photo_detector("haar"),
    }


def astronaut_faces(detectors: Mapping[str, FaceDetector]) -> dict[str, list[dict]] | None:
    """Each detector's faces in scikit-image's astronaut photo (one face); None without scikit-image."""
    try:
        from skimage.data import astronaut
    except ImportError:
        return None
    photo = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
    return {
        name: [
            {"box": list(d.box), "score": None if d.score is None else round(float(d.score), 3)}
            for d in find_faces(detector, photo)
        ]
        for name, detector in detectors.items()
    }


def format_detection(table: Mapping[str, dict], frames: int, astronaut: Mapping[str, list] | None) -> str:
    """:func:`detection_benchmark`'s table (and the astronaut's faces) as Markdown."""

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    first = next(iter(table.values()))
    sides, angles = list(first["recall_by_side"]), list(first["recall_by_angle"])
    header = ["detector", "recall", "precision", "boxes on no face", "on empty frames"]
    header += [f"recall {side}" for side in sides] + [f"recall {angle}" for angle in angles] + ["ms p50"]
    lines = [
        f"{frames} frames, {first['true_positives'] + first['missed']} faces, "
        f"{first['empty_frames']} frames without a face.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, row in table.items():
        cells = [name, share(row["recall"]), share(row["precision"])]
        cells += [str(row["boxes_on_no_face"]), str(row["false_positives_on_empty_frames"])]
        cells += [share(row["recall_by_side"][side]) for side in sides]
        cells += [share(row["recall_by_angle"][angle]) for angle in angles]
        cells.append(f"{row['ms_per_frame_p50']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if astronaut is None:
        lines.append("The astronaut photo needs scikit-image (not installed): not run.")
    else:
        for name, faces in astronaut.items():
            found = "; ".join(
                f"box {f['box']}" + (f", score {f['score']}" if f["score"] else "") for f in faces
            )
            lines.append(f"- astronaut, {name}: {len(faces)} face(s) {found}")
    return "\n".join(lines) + "\n"
