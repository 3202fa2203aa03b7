"""What defines a training run, without TensorFlow: settings, their choices, and the presets.

The command line, the job queue and the Train page import this module to build, check and
show configurations; only :mod:`fertools.train` (in a worker process) needs TensorFlow.
Argparse choices and page widgets take their options from the tuples here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "plateau")
CLASS_WEIGHTS = ("none", "balanced", "sqrt")
MIXED_PRECISION = ("auto", "on", "off")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings; defaults follow the internship report's ImageDataGenerator.

    ``rotation`` is in degrees; ``zoom``, ``width_shift`` and ``height_shift`` are
    fractions of the image size; ``brightness`` and ``contrast`` are fractions of
    the full range (0 turns a transform off).
    """

    rotation: float = 20.0
    zoom: float = 0.2
    width_shift: float = 0.2
    height_shift: float = 0.2
    horizontal_flip: bool = True
    brightness: float = 0.0
    contrast: float = 0.0
    #: Random erasing: fraction of images that get one random grey rectangle.
    erasing: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def is_identity(self) -> bool:
        return not any(
            (
                self.rotation,
                self.zoom,
                self.width_shift,
                self.height_shift,
                self.horizontal_flip,
                self.brightness,
                self.contrast,
                self.erasing,
            )
        )


#: Everything off: the network sees the images as they are.
NO_AUGMENTATION = AugmentConfig(0.0, 0.0, 0.0, 0.0, False, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run."""

    architecture: str = "default"
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    #: SGD momentum (Nesterov); also RMSprop's momentum.
    momentum: float = 0.9
    #: Decoupled weight decay for adamw and sgd; 0 turns it off.
    weight_decay: float = 0.0
    schedule: str = "constant"
    #: Epochs of linear warm-up for the cosine schedule (at the start of every cycle).
    warmup_epochs: int = 0
    #: Cosine with warm restarts (SGDR): the epochs of each cycle, summing to ``epochs``.
    #: Empty means one cycle over all epochs.
    cycle_epochs: tuple[int, ...] = ()
    #: Stochastic weight averaging (Izmailov et al. 2018): average the weights of the final
    #: ``average_epochs`` epochs, recompute the batch-norm statistics, and keep the average
    #: when it scores better on validation than the best single epoch. 0 turns it off.
    average_epochs: int = 0
    label_smoothing: float = 0.0
    #: "balanced" weighs classes by n / (k * n_c), "sqrt" by its square root (gentler).
    class_weights: str = "none"
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    #: Mixup's Beta(alpha, alpha); 0 turns mixup off.
    mixup: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    #: Patience in epochs on validation accuracy; 0 turns early stopping off.
    early_stopping: int = 0
    #: "auto" trains in mixed precision where it pays (float16 on a GPU, bfloat16 on a CPU with
    #: bfloat16 units), else float32; "on" forces it, "off" is float32 (``train.precision_policy``).
    mixed_precision: str = "auto"
    #: Extra keyword arguments for the architecture's builder.
    model_kwargs: dict = field(default_factory=dict)
    #: A model folder whose weights the run starts from (fine-tuning); empty starts from scratch.
    start_from: str = ""
    #: Knowledge distillation (:mod:`fertools.distill`): model folders whose averaged predictions
    #: the run learns from beside the labels; empty trains on the labels alone.
    teacher: tuple[str, ...] = ()
    #: The teachers' share of each training target (0..1); 1 learns from the teachers alone.
    distill: float = 0.5
    #: How the teachers see each face (:data:`fertools.views.VIEWS`).
    teacher_views: str = "mirror"

    def validate(self) -> None:
        """Raise ``ValueError`` with one sentence for a setting that cannot work."""
        from fertools.models import list_models  # the registry (imports Keras), only when asked

        if self.architecture not in list_models():
            raise ValueError(f"unknown architecture {self.architecture!r}; choose one of {list_models()}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {MIXED_PRECISION}, not {self.mixed_precision!r}"
            )
        if self.class_weights not in CLASS_WEIGHTS:
            raise ValueError(f"class_weights must be one of {CLASS_WEIGHTS}, not {self.class_weights!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be at least 1")
        if not 0 < self.learning_rate < 10:
            raise ValueError(f"learning rate {self.learning_rate} is out of range (0, 10)")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("the validation fraction must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError("label smoothing must be in [0, 1)")
        if not 0 <= self.average_epochs <= self.epochs:
            raise ValueError(f"average_epochs must be between 0 and the {self.epochs} epochs")
        if self.start_from and not (Path(self.start_from) / "card.json").is_file():
            raise ValueError(f"{self.start_from} is not a model folder to start from (it has no card.json)")
        if self.teacher:
            self._validate_teachers()
        if self.cycle_epochs and (sum(self.cycle_epochs) != self.epochs or min(self.cycle_epochs) < 1):
            raise ValueError(
                f"the cosine cycles {list(self.cycle_epochs)} must be positive and sum to the {self.epochs} epochs"
            )

    def _validate_teachers(self) -> None:
        from fertools.views import VIEWS

        for teacher in self.teacher:
            if not (Path(teacher) / "card.json").is_file():
                raise ValueError(f"the teacher {teacher} is not a model folder (it has no card.json)")
        if not 0 < self.distill <= 1:
            raise ValueError(f"the teachers' share distill must be in (0, 1], not {self.distill}")
        if self.teacher_views not in VIEWS:
            raise ValueError(f"teacher_views must be one of {VIEWS}, not {self.teacher_views!r}")

    def with_epochs(self, epochs: int) -> TrainConfig:
        """This run over ``epochs`` epochs, with the settings that count epochs rescaled to fit.

        The cosine cycles keep their proportions (each at least one epoch; one cycle when there are
        more cycles than epochs) and the weight average keeps its share of the run (at least one
        epoch when it was on). ``PRESETS["default"].with_epochs(10).cycle_epochs == (1, 2, 2, 3, 2)``.
        """
        average = 0
        if self.average_epochs:
            average = min(epochs, max(1, round(self.average_epochs * epochs / max(1, self.epochs))))
        return replace(
            self, epochs=epochs, cycle_epochs=_rescale(self.cycle_epochs, epochs), average_epochs=average
        )

    def to_dict(self) -> dict:
        values = asdict(self)
        values["augment"] = self.augment.to_dict() if self.augment else None
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if known.get("augment") is not None and not isinstance(known["augment"], AugmentConfig):
            known["augment"] = AugmentConfig.from_dict(known["augment"])
        if "cycle_epochs" in known:
            known["cycle_epochs"] = tuple(int(n) for n in known["cycle_epochs"])
        if "teacher" in known:
            teacher = known["teacher"]
            known["teacher"] = (
                (str(teacher),) if isinstance(teacher, str) else tuple(str(path) for path in teacher)
            )
        return cls(**known)


def _rescale(cycles: tuple[int, ...], epochs: int) -> tuple[int, ...]:
    """Cycle lengths in the same proportions, summing to ``epochs`` (largest remainders round up)."""
    total = sum(cycles)
    if total == epochs:
        return tuple(cycles)
    if not cycles or total <= 0 or len(cycles) > epochs:
        return ()
    exact = [cycle * epochs / total for cycle in cycles]
    parts = [max(1, math.floor(share)) for share in exact]
    by_remainder = sorted(range(len(parts)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in range(epochs - sum(parts)):  # short: the largest remainders get one more epoch
        parts[by_remainder[i % len(parts)]] += 1
    while sum(parts) > epochs:  # over (cycles raised to 1): take from the most rounded-up cycle
        longest = max((i for i in range(len(parts)) if parts[i] > 1), key=lambda i: parts[i] - exact[i])
        parts[longest] -= 1
    return tuple(parts)


#: The shipped model's recipe.
_DEFAULT_RECIPE = TrainConfig(
    architecture="default",
    epochs=245,
    cycle_epochs=(30, 50, 45, 60, 60),
    average_epochs=20,
    batch_size=64,
    learning_rate=1e-3,
    optimizer="adamw",
    weight_decay=0.05,
    schedule="cosine",
    warmup_epochs=1,
    label_smoothing=0.1,
    class_weights="sqrt",
    augment=AugmentConfig(
        rotation=10,
        zoom=0.1,
        width_shift=0.1,
        height_shift=0.1,
        horizontal_flip=True,
        brightness=0.1,
        contrast=0.1,
        erasing=0.25,
    ),
    val_fraction=0.1,
    seed=0,
)

#: Named configurations; ``default`` reproduces the shipped model.
PRESETS: dict[str, TrainConfig] = {
    "default": _DEFAULT_RECIPE,
    # The candidate successor (issue 14): the shipped recipe on the wider network, over warm
    # restarts that each end in a usable model, trained on all of Training and selected on
    # PublicTest (data/fer2013/val).
    "wide": replace(_DEFAULT_RECIPE, architecture="wide", epochs=200, cycle_epochs=(40, 60, 100)),
    # A third member built unlike the other two (residual blocks, strided convolutions), so that
    # it errs differently; one cosine cycle short enough to train within a session on a CPU.
    # Tried in the fifteenth session: the ensemble did not gain from it (docs/MODEL.md).
    "resnet": replace(_DEFAULT_RECIPE, architecture="resnet", epochs=50, cycle_epochs=(), average_epochs=8),
    "quick": TrainConfig(architecture="default", epochs=3, batch_size=64, augment=None),
    # Classroom presets: short runs without augmentation (on a 4-epoch FER2013 run the default
    # augmentation cost 17 points: 34.4% against 51.5%; it pays off over tens of epochs).
    "class_2min": TrainConfig(
        architecture="default", epochs=2, batch_size=128, learning_rate=2e-3, schedule="cosine", augment=None
    ),
    "class_5min": TrainConfig(
        architecture="default", epochs=4, batch_size=128, learning_rate=2e-3, schedule="cosine", augment=None
    ),
    "internship": TrainConfig(architecture="internship_cnn", epochs=100, batch_size=64, optimizer="adam"),
}

#: What a class can expect of a preset, measured with ``python -m fertools train --preset NAME`` on
#: this project's 2-core AMD EPYC CPU without a GPU (2026-12-02); wall time includes start-up and
#: the final evaluation; FER2013 figures are on PublicTest after training on its Training split.
PRESET_NOTES: dict[str, str] = {
    "class_2min": (
        "Measured on a 2-core CPU: FER2013 in 2:25, 39.9% on PublicTest; the built-in faces in 17 s, 90.7%."
    ),
    "class_5min": (
        "Measured on a 2-core CPU: FER2013 in 5:23, 51.5% on PublicTest; the built-in faces in 53 s, 100%."
    ),
    "default": (
        "The shipped ensemble's second member: 245 epochs, hours on a CPU; "
        "65.5% on PublicTest (66.7% with mirror TTA)."
    ),
    "resnet": (
        "A small residual network: 50 epochs in 63 min on a 2-core CPU; 64.5% on PublicTest "
        "(65.5% with mirror TTA)."
    ),
    "wide": (
        "The shipped ensemble's first member: 200 epochs of a network six times default's cost, "
        "many hours on a CPU; its epoch 184 scores 67.3% on PublicTest (68.7% with mirror TTA)."
    ),
}
