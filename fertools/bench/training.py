"""How fast FER Lab trains: images/s of each architecture through ``train()``'s own trainer.

Each architecture is built by :func:`fertools.train.build_trainer` (the registry's network
behind the augmentation layers, with the preset's optimizer and schedule, compiled as
``train()`` compiles it) and fitted on repeated synthetic batches through
:func:`fertools.train.make_dataset`; the input pipeline is also timed alone. A Keras callback
reads the clock after the warm-up steps and after the last one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from fertools import synthetic
from fertools.bench.generated import FER2013_USAGE
from fertools.bench.sizes import GPU_TRAIN_STEPS, GPU_TRAIN_WARMUP, Progress, Sizes
from fertools.constants import FER2013_CLASSES, INPUT_SHAPE
from fertools.runtime import cpu_has_bf16, onednn_enabled
from fertools.timing import call_seconds, per_second

#: Training images in one epoch, for the seconds-per-epoch extrapolation.
EPOCH_IMAGES = FER2013_USAGE["Training"]
#: Architectures whose training speed is compared.
TRAIN_ARCHITECTURES = ("gr5243_improved", "internship_cnn", "default", "wide")
#: Quick mode (CI) times only the pair that the target compares: each model's first step
#: costs about ten CPU-seconds of graph building.
QUICK_TRAIN_ARCHITECTURES = ("gr5243_improved", "default")


def bench_training(sizes: Sizes, quick: bool, say: Progress) -> dict:
    """Training images/s per architecture, and the input pipeline alone."""
    import keras
    import tensorflow as tf

    from fertools import train as training
    from fertools.config import PRESETS

    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    warmup, steps = sizes.train_warmup, sizes.train_steps
    if on_gpu and not quick:
        warmup, steps = GPU_TRAIN_WARMUP, GPU_TRAIN_STEPS
    config = PRESETS["default"]
    images, labels = synthetic.generate(n_per_class=sizes.train_faces_per_class, seed=0)
    num_classes = len(FER2013_CLASSES)
    weights = training.class_weight_vector(labels, num_classes, config.class_weights)

    def dataset() -> tf.data.Dataset:
        return training.make_dataset(
            images, labels, num_classes, config.batch_size, True, config.seed, weights[labels], config.mixup
        ).repeat()

    say("training: the input pipeline alone")
    iterator = iter(dataset())
    data_seconds = sum(call_seconds(lambda: next(iterator), steps, warmup))

    # What train() does last (train.precision_policy's "auto"), float32 beside it: mixed float16
    # and XLA on a GPU, mixed bfloat16 on a CPU with bfloat16 units, float32 on other CPUs.
    variants = [("float32", False)]
    if on_gpu:
        variants.append(("mixed_float16", True))
    elif cpu_has_bf16() and onednn_enabled():
        variants.append(("mixed_bfloat16", False))
    runs = []
    for architecture in QUICK_TRAIN_ARCHITECTURES if quick else TRAIN_ARCHITECTURES:
        for policy, xla in variants:
            say(f"training: {architecture} ({policy}{', XLA' if xla else ''}), {warmup} + {steps} steps")
            try:
                runs.append(training_speed(architecture, policy, xla, dataset, config, warmup, steps))
            except Exception as error:  # noqa: BLE001 - one failed variant (say XLA) must not lose the report
                message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
                runs.append(
                    {
                        "architecture": architecture,
                        "precision": policy,
                        "xla": xla,
                        "error": f"{type(error).__name__}: {message}",
                    }
                )
            keras.backend.clear_session()
    return {
        "device": "GPU" if on_gpu else "CPU",
        "batch_size": config.batch_size,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "epoch_images": EPOCH_IMAGES,
        "input_pipeline": {
            "ms_per_batch": round(data_seconds / steps * 1000, 3),
            "images_per_s": per_second(steps * config.batch_size, data_seconds),
        },
        "runs": runs,
        "note": "preset 'default' settings (optimizer, schedule, augmentation, class weights) for every "
        "architecture, compiled and fitted as fertools.train does; epoch_s extrapolates images/s "
        f"to {EPOCH_IMAGES:,} images",
    }


def training_speed(
    architecture: str, policy: str, xla: bool, dataset: Callable, config, warmup: int, steps: int
) -> dict:
    """Images/s of ``architecture`` under ``policy`` (and XLA): ``warmup`` untimed, ``steps`` timed steps."""
    import keras

    from fertools import train as training

    keras.utils.set_random_seed(config.seed)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        # The very trainer train() fits: the registry's network behind the augmentation layers.
        built = training.build_trainer(
            replace(config, architecture=architecture),
            len(FER2013_CLASSES),
            INPUT_SHAPE,
            EPOCH_IMAGES,
            seed=config.seed,
            jit_compile=xla,
        )
        trainer, model = built.fitted, built.model
        timer = step_timer(warmup, warmup + steps)
        started = time.perf_counter()
        trainer.fit(
            dataset(), epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[timer], shuffle=False
        )  # shuffle=False: the dataset shuffles itself; Keras would only warn
    finally:
        keras.mixed_precision.set_global_policy(previous)
    seconds = timer.end - timer.start
    rate = steps * config.batch_size / seconds
    return {
        "architecture": architecture,
        "precision": policy,
        "xla": xla,
        "parameters": int(model.count_params()),
        "warmup_s": round(timer.start - started, 3),
        "step_ms": round(seconds / steps * 1000, 3),
        "images_per_s": round(rate, 1),
        "epoch_s": round(EPOCH_IMAGES / rate, 2),
    }


def step_timer(warmup: int, total: int):
    """A callback that reads the clock after the warm-up steps (``.start``) and the last step (``.end``).

    Keras hands this (not async-safe) callback each step's logs as Python
    numbers, so the device has finished the step when the clock is read.
    Built here so that importing this module does not import TensorFlow.
    """
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start = self.end = 0.0

        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == warmup:
                self.start = time.perf_counter()
            elif batch + 1 == total:
                self.end = time.perf_counter()

    return StepTimer()
