"""From a run's weights to a model folder: the one writer of a trained model's card.

``train()`` calls :func:`publish` when a run ends (into ``<run>/model``);
``python -m fertools export RUN --out DIR`` calls :func:`export` for any run at any time
(while it trains, after an interruption, or to ship it elsewhere). Both evaluate on the run's
validation split and write the same card, so their figures cannot drift apart.
``python -m fertools ensemble DIR DIR ... --out DIR`` calls :func:`publish_ensemble`, which
combines trained model folders into one and writes its card the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from fertools import models
from fertools.averaging import average_summary
from fertools.config import TrainConfig
from fertools.data import Dataset
from fertools.distill import describe_teachers
from fertools.evaluate import Evaluation, evaluate
from fertools.modelcard import ModelCard, Preprocessing, hardware_description, load_model_dir, save_model_dir
from fertools.runs import RunDir


class ExportError(ValueError):
    """A run that cannot be exported (no config, no finished epoch); one sentence."""


def publish(
    model: keras.Model,
    run: RunDir,
    data: Dataset,
    config: TrainConfig,
    target: str | os.PathLike | None = None,
    *,
    command: str = "",
    notes: list[str] | None = None,
    about: dict | None = None,
    measure_inference: bool = False,
) -> dict:
    """Evaluate ``model`` on ``data``'s validation split and write it as a model folder.

    ``target`` defaults to the run's own ``model/``; only then are the run's metrics.json and
    val_predictions.npz (re)written, so exporting elsewhere leaves the run as it was.
    ``about`` adds the data's origin and terms to the card (e.g.
    :data:`fertools.constants.FER2013_ABOUT`); ``measure_inference`` records how the Recognizer's
    engine runs the model (accuracy and speed on the same faces). Returns the metrics.
    """
    target = Path(target) if target is not None else run.model_dir
    val_set = data.subset("val")
    scored = val_set if len(val_set) else data.subset("train")
    split = "val" if len(val_set) else "train (the run had no validation faces)"
    plain, scores = _scores(model, scored, data.classes)
    best = run.best_score() or {}
    average = average_summary(run)
    epochs_run = run.epochs_done()
    metrics = {
        **scores,
        "split": split,
        "epochs_run": epochs_run,
        # The best single epoch, even where the weight average is what ships (the card says which).
        "best_epoch": best.get("epoch"),
        "train_seconds": round(run.seconds_trained(), 1),
    }
    if target.resolve() == run.model_dir.resolve():
        run.write_metrics(metrics)
        run.write_predictions(scored.images, scored.labels, plain.probabilities, data.classes)

    card = ModelCard(
        name=target.name if target != run.model_dir else run.name(),
        architecture=config.architecture,
        classes=list(data.classes),
        input_shape=list(model.input_shape[1:]),
        parameters=int(model.count_params()),
        # How the training faces were made (fertools.preprocess.to_face: grey, area/linear resize,
        # not aligned), so the Recognizer crops faces the same way.
        preprocessing=Preprocessing(),
        training={
            "config": config.to_dict(),
            "command": command or run.read_status().get("command", ""),
            "epochs_run": epochs_run,
            "best_epoch": metrics["best_epoch"],
            "seconds": metrics["train_seconds"],
            "hardware": hardware_description(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            **({"teachers": describe_teachers(config.teacher)} if config.teacher else {}),
        },
        metrics={k: metrics[k] for k in CARD_METRICS},
        dataset=_describe(data, about),
        notes=list(notes or []),
    )
    if average is not None:
        card.training["weight_average"] = average
        if average["shipped"]:
            first, last = min(average["epochs"]), max(average["epochs"])
            card.notes.append(
                f"The weights are the average of epochs {first}-{last} (stochastic weight averaging), with "
                f"batch-norm statistics recomputed on the training faces: {average['score']:.2%} on validation, "
                f"against {average['best_epoch_score']:.2%} for the best single epoch ({average['best_epoch']})."
            )
    if measure_inference:
        from fertools.engine import measure_engine

        card.inference = measure_engine(model, scored.images, scored.labels)
        metrics["inference"] = card.inference
    save_model_dir(model, card, target)
    return metrics


#: The figures a card keeps from :func:`_scores` (plus the split's name).
CARD_METRICS = (
    "accuracy",
    "accuracy_flip_tta",
    "accuracy_ten_crop",
    "macro_f1",
    "per_class",
    "confusion",
    "n",
    "split",
)


def _scores(model: keras.Model, scored: Dataset, classes) -> tuple[Evaluation, dict]:
    """``model`` on ``scored``'s faces: the plain result, and its figures for each inference mode."""
    plain = evaluate(model, scored.images, scored.labels, classes)
    flipped = evaluate(model, scored.images, scored.labels, classes, tta=True)
    ten_crop = evaluate(model, scored.images, scored.labels, classes, views="ten_crop")
    return plain, {
        **plain.to_dict(),
        "accuracy_flip_tta": flipped.accuracy,
        "accuracy_ten_crop": ten_crop.accuracy,
    }


def _describe(data: Dataset, about: dict | None) -> dict:
    """The card's ``dataset`` section: where the faces came from and how they were split."""
    return {
        "source": data.source,
        "synthetic": data.synthetic,
        "classes": list(data.classes),
        "sizes": {name: int((data.split == name).sum()) for name in data.splits},
        "split": "; ".join(data.notes) or "as given by the source",
        **(about or {}),
    }


def rebuild(run: RunDir, data: Dataset) -> tuple[keras.Model, TrainConfig]:
    """The run's network with the weights it ships (its best epoch, or its weight average).

    Raises:
        ExportError: the run has no readable config or no saved epoch yet.
    """
    config = run.read_config()
    if config is None:
        raise ExportError(f"{run.path} is not a training run (no readable config.json).")
    if not run.best_weights.exists():
        raise ExportError(f"{run.path} has no finished epoch to export yet.")
    model = models.create(
        config.architecture, len(data.classes), (*data.images.shape[1:], 1), **config.model_kwargs
    )
    try:
        model.load_weights(run.final_weights())
    except (ValueError, OSError) as error:
        raise ExportError(
            f"{run.final_weights()} does not fit a {config.architecture} network ({error})."
        ) from None
    return model, config


def export(
    run_dir: str | os.PathLike,
    dataset: Dataset,
    out_dir: str | os.PathLike | None = None,
    *,
    note: str = "",
    about: dict | None = None,
) -> dict:
    """Write a run's shipped weights as a model folder (default: the run's ``model/``), measured.

    ``dataset`` is the data the run trained on: its validation split is rebuilt with the run's
    seed and fraction, so the figures are those of training. Returns the metrics.

    Raises:
        ExportError: the run cannot be exported.
    """
    run = RunDir(run_dir)
    config = run.read_config()
    if config is None:
        raise ExportError(f"{run_dir} is not a training run (no readable config.json).")
    if out_dir is not None:
        _check_out_dir(out_dir)
    data = dataset.with_validation(config.val_fraction, config.seed)
    model, config = rebuild(run, data)
    return publish(
        model,
        run,
        data,
        config,
        out_dir,
        notes=[note] if note else [],
        about=about,
        measure_inference=True,
    )


def _check_out_dir(out_dir: str | os.PathLike) -> None:
    """Refuse, before any work, an output that exists and is no folder (a model folder is one)."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ExportError(f"{out_dir} is a file, not a folder; write the model to a new folder.")


def _crop(preprocessing: Preprocessing) -> tuple:
    """What decides the pixels a network sees (not the card's descriptive text)."""
    p = preprocessing
    return (p.face_margin, p.color, p.resize_shrink, p.resize_enlarge, p.align)


def publish_ensemble(
    member_dirs: Sequence[str | os.PathLike],
    dataset: Dataset,
    out_dir: str | os.PathLike,
    *,
    command: str = "",
    note: str = "",
    about: dict | None = None,
) -> dict:
    """Combine trained model folders into one ensemble model folder, measured on ``dataset``'s val split.

    The members must share classes, input size and preprocessing. The card records each
    member's origin (command, training time, its own accuracy on the same faces) and the
    ensemble's figures for every inference mode, as :func:`publish` does for one network.
    Returns the metrics.

    Raises:
        ExportError: fewer than two members, a member listed twice or written over, members
            that disagree, classes that differ from the dataset's, or a dataset without
            validation faces.
        fertools.modelcard.ModelLoadError: a member folder that cannot be loaded.
    """
    from fertools.architectures.ensemble import combine
    from fertools.engine import measure_engine

    if len(member_dirs) < 2:
        raise ExportError("an ensemble needs at least two model folders.")
    resolved = [Path(path).resolve() for path in member_dirs]
    if len(set(resolved)) < len(resolved):
        raise ExportError("a model folder is listed twice; an ensemble needs different networks.")
    if Path(out_dir).resolve() in resolved:
        raise ExportError(f"{out_dir} is one of the members; write the ensemble to a new folder.")
    _check_out_dir(out_dir)
    loaded = [load_model_dir(path) for path in member_dirs]
    first = loaded[0][1]
    for path, (_, card) in zip(member_dirs, loaded):
        if card.architecture == "ensemble":
            raise ExportError(f"{path} is already an ensemble; list its members instead.")
        if card.classes != first.classes or card.input_shape != first.input_shape:
            raise ExportError(
                f"{path} and {member_dirs[0]} do not classify the same classes at the same input size."
            )
        if _crop(card.preprocessing) != _crop(first.preprocessing):
            raise ExportError(
                f"{path} and {member_dirs[0]} crop faces differently, so they cannot share an input."
            )
    if list(dataset.classes) != list(first.classes):
        raise ExportError(f"the data's classes {list(dataset.classes)} are not the members' {first.classes}.")
    scored = dataset.subset("val")
    if not len(scored):
        raise ExportError("the data has no validation faces to measure the ensemble on.")

    members = []
    for path, (network, card) in zip(member_dirs, loaded):
        _, own = _scores(network, scored, dataset.classes)
        training = card.training or {}
        members.append(
            {
                "path": str(path),
                "name": card.name,
                "architecture": card.architecture,
                "parameters": card.parameters,
                "command": training.get("command", ""),
                "epochs_run": training.get("epochs_run"),
                "seconds": training.get("seconds", 0),
                "hardware": training.get("hardware", ""),
                "trained_on": (card.dataset or {}).get("sizes", {}),
                **{key: own[key] for key in ("accuracy", "accuracy_flip_tta", "accuracy_ten_crop")},
            }
        )
    architectures = [card.architecture for _, card in loaded]
    model = combine([network for network, _ in loaded], architectures)
    plain, scores = _scores(model, scored, dataset.classes)
    metrics = {**scores, "split": "val"}
    target = Path(out_dir)
    card = ModelCard(
        name=target.name,
        architecture="ensemble",
        classes=list(first.classes),
        input_shape=list(first.input_shape),
        parameters=int(model.count_params()),
        preprocessing=first.preprocessing,
        training={
            "config": {"architecture": "ensemble", "model_kwargs": {"members": architectures}},
            "command": command,
            "members": members,
            "seconds": round(sum(member["seconds"] or 0 for member in members), 1),
            "hardware": hardware_description(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        metrics={k: metrics[k] for k in CARD_METRICS},
        dataset=_describe(dataset, about),
        notes=[note] if note else [],
    )
    card.inference = measure_engine(model, scored.images, scored.labels)
    metrics["inference"] = card.inference
    metrics["members"] = members
    save_model_dir(model, card, target)
    return metrics
