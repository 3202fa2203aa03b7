"""How fast a frame is recognised: ``Recognizer.analyze`` split into detection and classification.

On 640x480 frames with 0, 1 and 3 synthetic faces, each ``analyze`` call reports the seconds
it spent detecting and classifying (crops included), so one run says where a frame's time goes.
Then the model alone at batch 1 and 256 on each engine, and the ``fer`` package's
``detect_emotions`` on the same frames when it is installed (FER Lab does not install it).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import numpy as np

from fertools import synthetic
from fertools.bench.sizes import Progress, Sizes
from fertools.constants import FER2013_CLASSES, INPUT_SHAPE
from fertools.timing import call_seconds, milliseconds, per_second


def bench_recognition(sizes: Sizes, model_dir: str | os.PathLike, baselines: bool, say: Progress) -> dict:
    """``Recognizer.analyze`` per frame (detect and classify apart), the model alone, and ``fer``."""
    say("recognition: loading the model and building test frames")
    recognizer, model_source = load_recognizer(model_dir)
    from fertools.webcam import WebcamSettings, webcam_detector

    # The detector the Webcam page runs by default (the real-time path): BlazeFace's short-range
    # model, and the full-range one on frames where that finds no large face.
    detector = webcam_detector(WebcamSettings())
    frames = make_test_frames(detector)
    per_frame = {}
    for intended, (frame, detected) in frames.items():
        say(f"recognition: analyze, {intended} face(s)")
        timed = analyze_times(recognizer, frame, sizes.frames, detector)
        per_frame[str(intended)] = {
            "intended_faces": intended,
            "detected_faces": detected,
            "detection_ok": detected == intended == timed["analyzed_faces"],
            **timed,
        }

    say("recognition: the model alone")
    faces, _ = synthetic.generate(n_per_class=37, seed=2)  # 259 faces
    from fertools.engine import KerasEngine

    # First the path the app runs (the Recognizer's classify, mirror averaging included where it
    # is on by default), then the engine's single pass and, for comparison, the Keras call.
    name = recognizer.engine.name
    engines = {f"{name} (Recognizer's{', flip TTA' if recognizer.tta else ''})": recognizer.classify}
    if recognizer.tta:
        engines[f"{name}, one pass"] = recognizer.engine
    if name != "keras":
        engines["keras (compiled tf.function)"] = KerasEngine(recognizer.model)
    alone = {name: model_alone(classify, faces, sizes) for name, classify in engines.items()}
    first = next(iter(alone.values()))
    report = {
        "model": model_source,
        "frame_size": list(synthetic.FRAME_SIZE),
        "detector": f"the Webcam page's default ({detector_name(detector)})",
        "frames": per_frame,
        "engine": recognizer.engine.name,
        "classify_batch1": first["batch1"],
        "classify_batch256": first["batch256"],
        "engines": alone,
        "note": f"analyze = detection ({detector_name(detector)}) + crops + one batched call "
        f"to the {recognizer.engine.name} engine; detect and classify are the parts of the same calls",
    }
    if recognizer.fallback:
        report["fallback"] = recognizer.fallback
    if baselines:
        report["fer_package"] = fer_baseline(frames, per_frame, sizes, say)
    return report


def load_recognizer(model_dir: str | os.PathLike):
    """The Recognizer of ``model_dir`` with mirror averaging on, and where its model came from.

    An untrained ``default`` stands in when the folder cannot be loaded: speed does not depend
    on the weights.
    """
    from fertools.modelcard import ModelCard, ModelLoadError
    from fertools.recognize import Recognizer

    # NOTE: mirror averaging on, whatever this machine's default: the bench times both the
    # two-pass path and the single pass, so the report says whether the two fit the budget.
    try:
        return Recognizer.load(model_dir, tta=True), f"{model_dir}"
    except ModelLoadError as error:
        from fertools import models

        card = ModelCard(
            name="untrained",
            architecture="default",
            classes=list(FER2013_CLASSES),
            input_shape=list(INPUT_SHAPE),
        )
        recognizer = Recognizer(models.create("default", len(FER2013_CLASSES)), card, tta=True)
        return recognizer, f"untrained default ({error})"


def make_test_frames(detector) -> dict[int, tuple[np.ndarray, int]]:
    """640x480 BGR frames with 0, 1 and 3 synthetic faces, as ``{intended: (frame, detected)}``.

    Randomly posed synthetic faces are not all found (the Haar cascade finds about two in
    three), so faces are chosen from a seeded pool one slot at a time, keeping a face only
    if the detector then finds exactly the faces placed so far. ``detected`` is the
    detector's count on the final frame (equal to the intended count unless no pool face
    fitted a slot).
    """
    width, height = synthetic.FRAME_SIZE
    rng = np.random.default_rng(0)
    # A lit-from-the-side grey wall with sensor noise, not a flat colour.
    ramp = np.linspace(70, 170, width, dtype=np.float32)[None, :] + np.linspace(-20, 20, height)[:, None]
    wall = np.clip(ramp + rng.normal(0, 4, (height, width)), 0, 255).astype(np.uint8)
    pool, _ = synthetic.generate(n_per_class=8, seed=1)
    candidates = [synthetic.neutral_face(), *pool]
    layouts = {0: [], 1: [(220, 140, 200)], 3: [(20, 160, 180), (230, 150, 180), (440, 160, 180)]}
    frames = {}
    for intended, slots in layouts.items():
        places: list[tuple[int, int, int]] = []
        chosen: list[int] = []  # the index of each place's face in ``candidates``
        for slot in slots:
            for index in range(len(candidates)):
                if index in chosen:
                    continue
                faces = [candidates[i] for i in (*chosen, index)]
                trial = synthetic.face_frame([*places, slot], faces, background=wall)
                if len(detector.detect(trial)) == len(faces):
                    places.append(slot)
                    chosen.append(index)
                    break
        frame = synthetic.face_frame(places, [candidates[i] for i in chosen], background=wall)
        frames[intended] = (frame, len(detector.detect(frame)))
    return frames


def detector_name(detector) -> str:
    """A detector as a report names it: its class, and the BlazeFace models it runs."""
    tiers = getattr(detector, "detectors", None) or (detector,)
    inner = [getattr(tier, "detector", tier) for tier in tiers]
    models = [f"{type(d).__name__} {d.model}" if hasattr(d, "model") else type(d).__name__ for d in inner]
    return " then ".join(models)


def analyze_times(recognizer, frame: np.ndarray, calls: int, detector=None, warmup: int = 3) -> dict:
    """Milliseconds of ``calls`` ``analyze`` calls on ``frame``, whole and split.

    ``detect`` and ``classify`` (crops and the model) are the parts of the same calls, as
    ``analyze`` reports them; ``classify`` is None on a frame where no face was found.
    """
    parts: dict[str, list[float]] = {"detect": [], "classify": []}
    found: list = []

    def analyze() -> None:
        timings: dict[str, float] = {}
        found[:] = recognizer.analyze(frame, detector=detector, timings=timings)
        for name, samples in parts.items():
            samples.append(timings[name])

    whole = call_seconds(analyze, calls, warmup)
    return {
        "analyzed_faces": len(found),
        "analyze": milliseconds(whole),
        "detect": milliseconds(parts["detect"][warmup:]),
        "classify": milliseconds(parts["classify"][warmup:]) if found else None,
    }


def model_alone(classify: Callable[[np.ndarray], np.ndarray], faces: np.ndarray, sizes: Sizes) -> dict:
    """One engine's time for one face and for a batch of 256, after a warm-up."""
    one, batch = faces[:1], faces[:256]
    batch1 = milliseconds(call_seconds(lambda: classify(one), sizes.classify_calls, warmup=3))
    batch256 = milliseconds(
        call_seconds(lambda: classify(batch), max(3, sizes.classify_calls // 10), warmup=1)
    )
    return {
        "batch1": {**batch1, "faces_per_s": per_second(1, batch1["p50_ms"] / 1000)},
        "batch256": {**batch256, "faces_per_s": per_second(256, batch256["p50_ms"] / 1000)},
    }


def fer_baseline(frames: dict, per_frame: dict, sizes: Sizes, say: Progress) -> dict:
    """The ``fer`` package's ``detect_emotions`` on the same frames, or a note why it was not timed."""
    if importlib.util.find_spec("fer") is None:
        return {"note": "the fer package is not installed; not timed (FER Lab does not install it)"}
    say("recognition: baseline fer.FER().detect_emotions")
    try:
        from fer import FER

        detector = FER()
        results = {}
        for intended, (frame, _) in frames.items():
            found = detector.detect_emotions(frame)
            times = milliseconds(
                call_seconds(lambda frame=frame: detector.detect_emotions(frame), sizes.frames)
            )
            ours = per_frame[str(intended)]["analyze"]["p50_ms"]
            results[str(intended)] = {
                **times,
                "detected_faces": len(found),
                "ratio": round(times["p50_ms"] / max(ours, 1e-9), 2),
            }
        results["note"] = "ratio: fer ms over FER Lab ms per frame (how many times faster FER Lab is)"
        return results
    except Exception as error:  # noqa: BLE001 - a third-party package's failure becomes a note, not a lost report
        return {"note": f"fer failed: {type(error).__name__}: {error}"}
