"""``python -m fertools``: train, export, ensemble, evaluate, predict, convert, info and bench from a shell.

Every mistake a user can make (missing file, wrong format, bad option) ends
in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from fertools.estimate import format_duration

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UserError(f"{self.prog}: {message}")


# --- progress bars ------------------------------------------------------------------------


def _bar(fraction: float, width: int = 28) -> str:
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction:6.1%}"


def _print_progress(fraction: float, text: str) -> None:
    end = "\n" if fraction >= 1 else ""
    print(f"\r{_bar(fraction)} {text}", end=end, file=sys.stderr, flush=True)


# --- commands ---------------------------------------------------------------------------------


def _load_data(source: str, progress: bool = True):
    from fertools import data

    try:
        return data.load(source, progress=_print_progress if progress and sys.stderr.isatty() else None)
    except data.DatasetError as error:
        raise UserError(str(error)) from None
    except OSError as error:
        raise UserError(f"cannot read {source}: {error.strerror or error}") from None


def cmd_info(args) -> int:
    dataset = _load_data(args.source)
    if args.json:
        print(
            json.dumps(
                {
                    "source": dataset.source,
                    "size": len(dataset),
                    "classes": list(dataset.classes),
                    "synthetic": dataset.synthetic,
                    "counts": dataset.counts(),
                    "rejected": dataset.rejected_counts(),
                },
                indent=2,
            )
        )
        return 0
    print(dataset.describe())
    counts = dataset.counts()
    width = max(len(c) for c in dataset.classes) + 2
    print(f"{'class':<{width}}" + "".join(f"{name:>8}" for name in counts))
    for cls in dataset.classes:
        print(f"{cls:<{width}}" + "".join(f"{counts[name][cls]:>8}" for name in counts))
    rejected = dataset.rejected_counts()
    print(
        "rejected: " + (", ".join(f"{n} {reason}" for reason, n in rejected.items()) if rejected else "none")
    )
    for note in dataset.notes:
        print(f"note: {note}")
    return 0


def cmd_convert(args) -> int:
    from fertools import data

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".npz"):
        raise UserError(f"convert: the output must end in .csv or .npz, not {out.name!r}")
    started = time.perf_counter()
    dataset = _load_data(args.source)
    if out.suffix.lower() == ".npz":
        data.save_npz(dataset, out)
    else:
        out.write_bytes(data.to_fer2013_csv(dataset))
    seconds = time.perf_counter() - started
    print(
        f"wrote {len(dataset)} faces to {out} in {seconds:.1f} s ({len(dataset) / max(seconds, 1e-9):.0f} images/s);"
        f" rejected {len(dataset.rejected)}"
    )
    return 0


def _cycle_lengths(text: str) -> tuple[int, ...]:
    try:
        lengths = tuple(int(part) for part in text.split(","))
    except ValueError:
        lengths = ()
    if not lengths or min(lengths) < 1:
        raise argparse.ArgumentTypeError(f"expected positive epoch counts like 30,50,45, not {text!r}")
    return lengths


def _train_config(args):
    from fertools.config import NO_AUGMENTATION, PRESETS, TrainConfig
    from fertools.runs import RunDir

    if args.resume:
        config = RunDir(args.out).read_config()
        if config is None:
            raise UserError(f"train: {args.out} holds no readable config.json to resume")
        return config
    if args.preset and args.preset not in PRESETS:
        raise UserError(f"train: unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}")
    config = PRESETS[args.preset] if args.preset else TrainConfig()
    overrides = {
        "architecture": args.arch,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "optimizer": args.optimizer,
        "schedule": args.schedule,
        "label_smoothing": args.label_smoothing,
        "class_weights": args.class_weights,
        "mixup": args.mixup,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "early_stopping": args.early_stopping,
        "weight_decay": args.weight_decay,
        "average_epochs": args.average,
        "mixed_precision": args.precision,
        "start_from": args.start_from,
        "teacher": tuple(args.teacher) if args.teacher else None,
        "distill": args.distill,
        "teacher_views": args.teacher_views,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if args.cycles is not None:
        config = replace(config, cycle_epochs=args.cycles, epochs=args.epochs or sum(args.cycles))
    elif args.epochs is not None and config.cycle_epochs and sum(config.cycle_epochs) != args.epochs:
        config = replace(config, cycle_epochs=())  # a preset's cycles do not fit: one cosine cycle
    if args.average is None and config.average_epochs > config.epochs:
        config = replace(config, average_epochs=0)  # a preset's average does not fit a shorter run
    if args.no_augment:
        config = replace(config, augment=NO_AUGMENTATION)
    return config


def cmd_train(args) -> int:
    from fertools.runs import RunDir

    # Checks that need no TensorFlow come first: it is slow to import, and noisy on stderr.
    run = RunDir(args.out)
    if args.resume and run.read_config() is None:
        raise UserError(f"train: {args.out} holds no run to resume (no readable config.json)")
    # Then the data: a wrong path is the likeliest mistake, and it is found before TensorFlow loads.
    dataset = _load_data(args.data)
    if "train" not in dataset.splits:
        raise UserError(f"train: {args.data} has no training rows; it has the splits {dataset.splits}")
    from fertools import train

    config = _train_config(args)
    try:
        config.validate()
    except ValueError as error:
        raise UserError(f"train: {error}") from None
    resumed = run.checkpoint_dir.exists()
    print(
        f"{'resuming' if resumed else 'training'} {config.architecture} on {dataset.describe()}",
        file=sys.stderr,
    )

    def show(p) -> None:  # a fertools.callbacks.Progress
        metrics = " ".join(
            f"{k} {v:.4f}" for k, v in p.logs.items() if k in ("loss", "accuracy", "val_accuracy")
        )
        text = (
            f"epoch {p.epoch}/{p.epochs} batch {p.batch}/{p.batches} {metrics} eta {format_duration(p.eta)}"
        )
        if p.epoch_end:
            print(f"\r{_bar(p.fraction)} {text}", file=sys.stderr, flush=True)
        elif sys.stderr.isatty():
            print(f"\r{_bar(p.fraction)} {text}", end="", file=sys.stderr, flush=True)

    command = "python -m fertools " + shlex.join(sys.argv[1:])
    try:
        result = train.train(dataset, config, args.out, progress=show, command=command)
    except ValueError as error:  # a teacher that cannot teach this data, found once it is loaded
        raise UserError(f"train: {error}") from None
    if result.status == "failed":
        print(f"train: failed: {result.reason}", file=sys.stderr)
        return 1
    metrics = result.metrics
    print(
        f"{result.status}: validation accuracy {metrics['accuracy']:.4f} "
        f"(flip TTA {metrics['accuracy_flip_tta']:.4f}); model saved in {Path(args.out) / 'model'}"
    )
    return 0


def cmd_evaluate(args) -> int:
    from fertools.modelcard import ModelLoadError, load_model_dir, read_card

    # Everything a user can get wrong is checked before TensorFlow is imported (slow, and noisy on stderr).
    try:
        card = read_card(args.model)
    except ModelLoadError as error:
        raise UserError(str(error)) from None
    dataset = _load_data(args.data)
    if args.split:
        if args.split not in dataset.splits:
            raise UserError(f"evaluate: the data has no {args.split!r} split; it has {dataset.splits}")
        dataset = dataset.subset(args.split)
    elif len(dataset.splits) > 1:
        # The held-out part: test if there is one, else val.
        dataset = dataset.subset("test" if "test" in dataset.splits else "val")
    if not len(dataset):
        raise UserError(f"evaluate: {args.data} has no faces to evaluate (every row or file was rejected)")
    labels = _map_labels(dataset, card.classes)
    try:
        model, card = load_model_dir(args.model)
    except ModelLoadError as error:
        raise UserError(str(error)) from None
    from fertools import evaluate as ev

    evaluation = ev.evaluate(
        model, dataset.images, labels, tuple(card.classes), tta=args.tta, views=args.views
    )
    if args.json:
        print(json.dumps(evaluation.to_dict()))
    else:
        print(ev.format_table(evaluation))
    return 0


def _map_labels(dataset, model_classes: list[str]):
    """The dataset's labels as indices into the model's class list."""
    import numpy as np

    index = {name: i for i, name in enumerate(model_classes)}
    missing = [c for c in dataset.classes if c not in index]
    if missing:
        raise UserError(f"evaluate: the model does not know the classes {missing}; it has {model_classes}")
    lookup = np.array([index[c] for c in dataset.classes])
    return lookup[dataset.labels]


def cmd_predict(args) -> int:
    import cv2

    from fertools.images import ImageError, read_image_file
    from fertools.modelcard import ModelLoadError, read_card

    # Check the model folder and read every image before TensorFlow is imported (slow, and noisy on stderr).
    try:
        read_card(args.model)
    except ModelLoadError as error:
        raise UserError(str(error)) from None
    images = []
    for path in args.images:
        try:
            image = read_image_file(path)
        except OSError as error:
            raise UserError(f"predict: cannot read {path} ({error.strerror or error})") from None
        except ImageError as error:
            raise UserError(f"predict: {error}") from None
        images.append(image)
    if args.annotate:
        annotate = Path(args.annotate)
        if not cv2.haveImageWriter(str(annotate)):
            raise UserError(f"predict: cannot write an image named {annotate.name!r}; use .png or .jpg")
        if not annotate.parent.is_dir():
            raise UserError(f"predict: the folder {annotate.parent} does not exist")

    from fertools.faces import photo_detector
    from fertools.recognize import Recognizer, draw_faces

    try:
        recognizer = Recognizer.load(args.model, tta=args.tta)
    except ModelLoadError as error:
        raise UserError(str(error)) from None
    results = []
    for path, image in zip(args.images, images):
        if args.whole:
            faces = [recognizer.analyze_face(image, views=args.views)]
        else:
            faces = recognizer.analyze(image, detector=photo_detector(), views=args.views)
        results.append([face.to_dict() for face in faces])
        if args.annotate:
            out = Path(args.annotate)
            if len(args.images) > 1:
                out = out.with_name(f"{out.stem}_{Path(path).stem}{out.suffix}")
            if not cv2.imwrite(str(out), draw_faces(image, faces)):
                raise UserError(f"predict: could not write {out}")
        if not args.json:
            print(f"{path}: {len(faces)} face(s)")
            for face in faces:
                top = sorted(face.probabilities.items(), key=lambda kv: -kv[1])[:3]
                print(f"  box {list(face.box)} {face.label} " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    if args.json:
        print(json.dumps(results))
    return 0


def cmd_export(args) -> int:
    from fertools.constants import FER2013_ABOUT
    from fertools.runs import RunDir

    run = RunDir(args.run)
    config = run.read_config()
    if config is None:
        raise UserError(f"export: {args.run} is not a training run (no readable config.json)")
    try:
        config.validate()
    except ValueError as error:
        raise UserError(f"export: {args.run}'s config.json cannot be used: {error}") from None
    if not run.best_weights.exists():
        raise UserError(f"export: {args.run} has no finished epoch to export yet")
    source = args.data or ((run.read_job() or {}).get("dataset") or {}).get("path")
    if not source:
        raise UserError("export: say which data the run trained on with --data")
    dataset = _load_data(source)
    from fertools.publish import ExportError, export

    about = FER2013_ABOUT if "fer2013" in str(source).lower() else None
    try:
        metrics = export(run.path, dataset, args.out, note=args.note, about=about)
    except ExportError as error:
        raise UserError(f"export: {error}") from None
    target = Path(args.out) if args.out else run.model_dir
    print(
        f"exported {config.architecture} to {target}: validation accuracy {metrics['accuracy']:.4f} "
        f"(flip TTA {metrics['accuracy_flip_tta']:.4f}), {metrics['epochs_run']} epochs run, "
        f"best epoch {metrics['best_epoch']}"
    )
    return 0


def cmd_ensemble(args) -> int:
    from fertools.constants import FER2013_ABOUT
    from fertools.modelcard import ModelLoadError
    from fertools.publish import ExportError, publish_ensemble

    dataset = _load_data(args.data)
    about = FER2013_ABOUT if "fer2013" in str(args.data).lower() else None
    command = "python -m fertools " + shlex.join(sys.argv[1:])
    try:
        metrics = publish_ensemble(
            args.models, dataset, args.out, command=command, note=args.note, about=about
        )
    except (ExportError, ModelLoadError) as error:
        raise UserError(f"ensemble: {error}") from None
    for member in metrics["members"]:
        print(
            f"  {member['path']} ({member['architecture']}): {member['accuracy']:.4f}"
            f" (flip TTA {member['accuracy_flip_tta']:.4f})"
        )
    print(
        f"ensemble of {len(metrics['members'])} written to {args.out}: validation accuracy {metrics['accuracy']:.4f} "
        f"(flip TTA {metrics['accuracy_flip_tta']:.4f}, ten crops {metrics['accuracy_ten_crop']:.4f}); "
        f"LiteRT with flip TTA {metrics['inference']['accuracy_flip_tta']:.4f}, "
        f"{metrics['inference']['ms_per_face_flip_tta_p50']:.2f} ms per face"
    )
    return 0


def cmd_card(args) -> int:
    from fertools.modelcard import ModelLoadError, card_markdown, read_card

    try:
        card = read_card(args.model)
    except ModelLoadError as error:
        raise UserError(str(error)) from None
    print(card.to_json() if args.json else card_markdown(card), end="" if not args.json else "\n")
    return 0


def cmd_bench(args) -> int:
    from fertools import bench

    try:
        report = bench.run(
            quick=args.quick,
            csv_path=args.csv,
            folder=args.folder,
            skip=set(args.skip or ()),
            progress=lambda text: print(text, file=sys.stderr, flush=True),
        )
    except bench.BenchInputError as error:
        raise UserError(str(error)) from None
    print(json.dumps(report, indent=2) if args.json else bench.format_report(report))
    return 0


def cmd_detection_bench(args) -> int:
    from fertools import detection_bench as bench

    try:
        frames = bench.make_frames(args.faces, n_frames=args.frames, seed=args.seed)
    except (OSError, ValueError) as error:
        raise UserError(f"detection-bench: {error}") from None
    detectors = bench.page_detectors()
    table = bench.detection_benchmark(detectors, frames)
    astronaut = bench.astronaut_faces(detectors)
    if args.json:
        print(json.dumps({"frames": len(frames), "detectors": table, "astronaut": astronaut}, indent=2))
    else:
        print(bench.format_detection(table, len(frames), astronaut), end="")
    return 0


# --- the parser ---------------------------------------------------------------------------------

VIEWS_HELP = (
    "views averaged per face: one, mirror (as --tta) or ten_crop (the face and five crops, each "
    "mirrored: 12 views, for still images; overrides --tta)"
)


def build_parser() -> argparse.ArgumentParser:
    from fertools.bench import SECTIONS as BENCH_SECTIONS
    from fertools.config import CLASS_WEIGHTS, MIXED_PRECISION, OPTIMIZERS, PRESETS, SCHEDULES
    from fertools.constants import DEFAULT_MODEL_DIR
    from fertools.views import VIEWS

    parser = _Parser(prog="python -m fertools", description="FER Lab: facial emotion recognition tools.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("info", help="counts per split and class, and rejected rows")
    p.add_argument("source", help="dataset: CSV, image folder, zip, .npz or 'builtin'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert any dataset source to FER2013 CSV or .npz")
    p.add_argument("source")
    p.add_argument("out", help="OUT.csv or OUT.npz")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("train", help="train a model; rerun with the same --out to resume")
    p.add_argument("--data", default="builtin")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument(
        "--preset",
        default="",
        metavar="NAME",
        help=f"start from a named config: {', '.join(PRESETS)} ('default' is the shipped model)",
    )
    p.add_argument("--resume", action="store_true", help="reuse the run folder's saved config")
    p.add_argument("--arch")
    p.add_argument("--epochs", type=int)
    p.add_argument(
        "--cycles",
        type=_cycle_lengths,
        metavar="N,N,...",
        help="cosine cycles (warm restarts) in epochs, e.g. 30,50,45; --epochs defaults to their sum. "
        "--epochs alone replaces a preset's cycles that do not add up to it with one cycle",
    )
    p.add_argument(
        "--average",
        type=int,
        metavar="N",
        help="average the weights of the final N epochs (stochastic weight averaging); 0 turns it off",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--class-weights", choices=CLASS_WEIGHTS)
    p.add_argument("--mixup", type=float)
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument(
        "--precision",
        choices=MIXED_PRECISION,
        help="mixed precision: auto (where it pays: a GPU, or a CPU with bfloat16 units), on, off",
    )
    p.add_argument(
        "--start-from", metavar="MODEL_DIR", help="fine-tune: start from this model's weights (same network)"
    )
    p.add_argument(
        "--teacher",
        nargs="+",
        metavar="MODEL_DIR",
        help="distillation: learn from these models' averaged predictions as well as the labels",
    )
    p.add_argument(
        "--distill",
        type=float,
        metavar="SHARE",
        help="the teachers' share of each target, 0..1 (default 0.5)",
    )
    p.add_argument("--teacher-views", choices=VIEWS, help="how the teachers see each face (default mirror)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, per-class table and confusion matrix")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=("train", "val", "test"))
    p.add_argument("--tta", action="store_true", help="average with the mirrored face")
    p.add_argument("--views", choices=VIEWS, help=VIEWS_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="detect faces in images and classify each")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--whole", action="store_true", help="treat each image as one face crop")
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        help="average each face with its mirror image (default: on with the fast LiteRT engine)",
    )
    p.add_argument("--views", choices=VIEWS, help=VIEWS_HELP)
    p.add_argument("--annotate", metavar="OUT.png", help="write the image with boxes and labels")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write a run's shipped weights as a model folder, measured")
    p.add_argument("run", help="run folder (from train --out, or runs/<id>)")
    p.add_argument("--data", help="the data it trained on (default: the dataset the app saved with it)")
    p.add_argument("--out", help="model folder to write (default: the run's own model/)")
    p.add_argument("--note", default="", help="a sentence for the card's notes")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("ensemble", help="combine trained model folders into one, measured")
    p.add_argument("models", nargs="+", metavar="MODEL_DIR", help="two or more model folders")
    p.add_argument("--data", required=True, help="labelled data with a validation split to measure on")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--note", default="", help="a sentence for the card's notes")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("card", help="a model folder's card as Markdown (or --json)")
    p.add_argument("model", nargs="?", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("bench", help="speed of loading, recognition and training, against the baselines")
    p.add_argument("--quick", action="store_true", help="small sizes, for CI")
    p.add_argument("--csv", help="a real fer2013.csv to time instead of a generated one")
    p.add_argument("--folder", help="a real image folder to time instead of a generated one")
    p.add_argument("--skip", nargs="*", choices=BENCH_SECTIONS)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "detection-bench",
        help="recall and precision of the pages' face detectors on frames built from face crops",
    )
    p.add_argument(
        "faces", help="a folder of face crops, in class subfolders or flat (e.g. data/fer2013/val)"
    )
    p.add_argument("--frames", type=int, default=300, help="frames to compose (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_detection_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as error:
        print(str(error).splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
