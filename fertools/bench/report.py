"""The benchmark's report: the environment it ran in, the targets judged, and the text form.

A report is plain JSON (dicts, lists, numbers, strings): ``--json`` prints it as it is,
:func:`format_report` as Markdown-style tables, one per section, then the targets.
"""

from __future__ import annotations

import os
import platform

import cv2
import numpy as np

#: The issue's targets: (key, what, limit, unit, direction, GPU only).
TARGETS = (
    ("csv_cold", "CSV load, cold", 1.5, "s", "<=", False),
    ("csv_cached", "CSV load, cached", 0.2, "s", "<=", False),
    ("folder_load", "folder load", 5.0, "s", "<=", False),
    ("analyze_one_face", "analyze, 1 face, median (Webcam detector)", 5.0, "ms", "<=", False),
    ("analyze_three_faces", "analyze, 3 faces, median (Webcam detector)", 8.0, "ms", "<=", False),
    ("fer_ratio_one_face", "fer detect_emotions / analyze, 1 face", 8.0, "x", ">=", False),
    ("model_one_face", "model alone, 1 face, median", 2.0, "ms", "<=", False),
    ("default_vs_gr5243", "default / gr5243_improved images/s", 1.0, "x", ">=", False),
    ("gpu_default_epoch", "one default epoch on GPU", 3.0, "s", "<=", True),
)

#: Targets timed on a frame with a known number of faces: judged only when all were found.
FRAME_TARGETS = {"analyze_one_face": "1", "analyze_three_faces": "3", "fer_ratio_one_face": "1"}


def environment() -> dict:
    """Hardware, library versions and thread settings of this process."""
    import keras
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):
            details = {}
        gpus.append(str(details.get("device_name", device.name)))
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "hardware": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "usable_cores": usable,
            "memory_gib": round(memory_gib, 1) if memory_gib else None,
            "gpus": gpus,
        },
        # Numbers measured on a busy machine are slower: the load says how busy it was.
        "load_average": [round(value, 2) for value in load] if load else None,
        "platform": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
        },
        "threads": {
            # 0 means TensorFlow picks (about one thread per core).
            "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cv2": cv2.getNumThreads(),
        },
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def target_value(report: dict, key: str) -> float | None:
    """The measured value of target ``key`` in ``report``; None when its section was not run."""
    loading, recognition, training = (report.get(k) for k in ("loading", "recognition", "training"))
    if key == "csv_cold" and loading:
        return loading["csv"]["cold"]["median_s"]
    if key == "csv_cached" and loading:
        return loading["csv"]["cached"]["median_s"]
    if key == "folder_load" and loading:
        return loading["folder"]["median_s"]
    if key == "analyze_one_face" and recognition:
        return recognition["frames"]["1"]["analyze"]["p50_ms"]
    if key == "analyze_three_faces" and recognition and "3" in recognition["frames"]:
        return recognition["frames"]["3"]["analyze"]["p50_ms"]
    if key == "fer_ratio_one_face" and recognition:
        return (recognition.get("fer_package") or {}).get("1", {}).get("ratio")
    if key == "model_one_face" and recognition:
        return recognition["classify_batch1"]["p50_ms"]
    if not training:
        return None
    # The variant train() would use on this device: the last one listed per architecture.
    rates = {run["architecture"]: run for run in training["runs"]}
    default, gr5243 = rates.get("default", {}), rates.get("gr5243_improved", {})
    if key == "default_vs_gr5243" and "images_per_s" in default and "images_per_s" in gr5243:
        return round(default["images_per_s"] / gr5243["images_per_s"], 3)
    if key == "gpu_default_epoch" and training["device"] == "GPU" and "epoch_s" in default:
        return default["epoch_s"]
    return None


def judge_targets(report: dict, quick: bool) -> list[dict]:
    """Each target of the issue with its measured value and a status.

    Status is ``pass`` or ``fail`` in full mode, ``not judged (quick)`` in quick
    mode, ``not measured`` for a skipped section, and ``not applicable (no GPU)``
    for GPU targets on a CPU.
    """
    on_gpu = bool(report["environment"]["hardware"]["gpus"])
    judged = []
    for key, what, limit, unit, direction, gpu_only in TARGETS:
        value = target_value(report, key)
        if gpu_only and not on_gpu:
            status = "not applicable (no GPU)"
        elif value is None:
            status = "not measured"
        elif key in FRAME_TARGETS and not report["recognition"]["frames"][FRAME_TARGETS[key]]["detection_ok"]:
            found = report["recognition"]["frames"][FRAME_TARGETS[key]]["detected_faces"]
            status = f"not judged (detector found {found} faces)"
        elif quick:
            status = "not judged (quick)"
        else:
            met = value <= limit if direction == "<=" else value >= limit
            status = "pass" if met else "fail"
        judged.append(
            {
                "key": key,
                "target": f"{what} {direction} {limit:g} {unit}",
                "value": value,
                "unit": unit,
                "status": status,
            }
        )
    return judged


def markdown_row(*cells: object) -> str:
    """One Markdown table row of ``cells``."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def markdown_table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    """The lines of a Markdown table, then an empty line."""
    return [
        markdown_row(*header),
        markdown_row(*("---" for _ in header)),
        *(markdown_row(*cells) for cells in rows),
        "",
    ]


def format_report(report: dict) -> str:
    """The report as Markdown-style text: environment, one table per section, then the targets."""
    meta, env = report["meta"], report["environment"]
    hardware, versions, threads = env["hardware"], env["versions"], env["threads"]
    mode = "quick (CI sizes; targets not judged)" if meta["quick"] else "full"
    lines = [
        f"# FER Lab benchmark ({mode})",
        "",
        f"- started {meta['started']}, took {meta.get('seconds', '?')} s ({meta.get('cpu_s', '?')} CPU s)"
        + (f"; skipped: {', '.join(meta['skipped'])}" if meta["skipped"] else ""),
        (
            f"- CPU: {hardware['cpu']}, {hardware['cores']} cores ({hardware['usable_cores']} usable), "
            f"{hardware['memory_gib']} GiB; GPU: {', '.join(hardware['gpus']) or 'none'}"
        ),
        f"- load average at start: {env['load_average']}",
        "- versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()),
        "- threads: " + ", ".join(f"{name} {value}" for name, value in threads.items()),
        "",
    ]
    if "loading" in report:
        lines += format_loading(report["loading"])
    if "recognition" in report:
        lines += format_recognition(report["recognition"])
    if "training" in report:
        lines += format_training(report["training"])
    if meta.get("sections"):
        lines += [
            "Time per section: "
            + ", ".join(
                f"{name} {t['wall_s']} s ({t['cpu_s']} CPU s)" for name, t in meta["sections"].items()
            )
            + ".",
            "",
        ]
    lines += ["## Targets", ""]
    lines += markdown_table(
        ("target", "measured", "status"),
        [
            (t["target"], "-" if t["value"] is None else f"{t['value']:.3g} {t['unit']}", t["status"])
            for t in report["targets"]
        ],
    )
    return "\n".join(lines).rstrip() + "\n"


def format_loading(loading: dict) -> list[str]:
    """The loading section: FER Lab's loads, then the notebook baselines on the same CSV."""
    csv_report, folder, convert = loading["csv"], loading["folder"], loading["convert"]
    lines = [
        "## Loading",
        "",
        (
            f"CSV: {csv_report['source']}, {csv_report['rows']:,} rows, {csv_report['megabytes']} MB. "
            f"Folder: {folder['source']}, {folder['images']:,} images."
        ),
        "",
    ]
    rows = [
        (
            "CSV, cold (use_cache=False)",
            f"{csv_report['cold']['median_s']:.3f}",
            f"{csv_report['cold']['rows_per_s']:,.0f} rows/s",
            csv_report["cold"]["repeats"],
        ),
        ("CSV, first load (parse + cache write)", f"{csv_report['first_cached_load_s']:.3f}", "", 1),
        (
            "CSV, cached",
            f"{csv_report['cached']['median_s']:.3f}",
            f"{csv_report['cached']['rows_per_s']:,.0f} rows/s",
            csv_report["cached"]["repeats"],
        ),
        (
            "image folder",
            f"{folder['median_s']:.3f}",
            f"{folder['images_per_s']:,.0f} images/s",
            folder["repeats"],
        ),
        (
            "folder -> .npz (convert)",
            f"{convert['median_s']:.3f}",
            f"{convert['images_per_s']:,.0f} images/s",
            convert["repeats"],
        ),
    ]
    lines += markdown_table(("FER Lab", "median s", "rate", "repeats"), rows)
    baselines = loading.get("baselines")
    if baselines:
        names = {"notebook_loop": "GR5243 per-pixel loop", "numpy_per_row": "np.array(row.split()) per row"}
        rows = [
            (
                names[key],
                f"{b['rows_timed']:,}",
                f"{b['seconds']:.3f}",
                f"{b['rows_per_s']:,.0f}",
                f"{b['seconds_for_file']:.2f}",
                f"{b['ratio_cold']:.1f}x",
                f"{b['ratio_cached']:.1f}x",
            )
            for key, b in baselines.items()
            if key in names
        ]
        if rows:
            lines += markdown_table(
                (
                    "baseline (same CSV)",
                    "rows timed",
                    "s",
                    "rows/s",
                    "s for the file",
                    "FER Lab cold is",
                    "FER Lab cached is",
                ),
                rows,
            )
        lines += [f"Baselines: {baselines['note']}.", ""]
    return lines


def format_recognition(recognition: dict) -> list[str]:
    """The recognition section: per frame (analyze, detect, classify, the fer baseline), then engines."""
    width, height = recognition["frame_size"]
    lines = [
        "## Recognition",
        "",
        f"Model: {recognition['model']}. Detector: {recognition['detector']}. Frames {width}x{height}. "
        "Each analyze call is split into detection and classification (crops and the model).",
        "",
    ]
    if recognition.get("fallback"):
        lines += [f"Engine: {recognition['fallback']}", ""]
    fer = recognition.get("fer_package", {})
    rows = []
    for key, frame in recognition["frames"].items():
        baseline = fer.get(key)
        rows.append(
            (
                frame["intended_faces"],
                f"{frame['detected_faces']}" + ("" if frame["detection_ok"] else " (MISMATCH)"),
                f"{frame['analyze']['p50_ms']:.2f}",
                f"{frame['analyze']['p90_ms']:.2f}",
                f"{frame['detect']['p50_ms']:.2f}",
                f"{frame['classify']['p50_ms']:.2f}" if frame["classify"] else "-",
                f"{baseline['p50_ms']:.1f}" if baseline else "-",
                f"{baseline['ratio']:.1f}x" if baseline else "-",
            )
        )
    lines += markdown_table(
        (
            "faces",
            "detected",
            "analyze p50 ms",
            "p90 ms",
            "detect p50 ms",
            "classify p50 ms",
            "fer p50 ms",
            "FER Lab is",
        ),
        rows,
    )
    rows = []
    for name, timing in recognition["engines"].items():
        for size, key in (("1", "batch1"), ("256", "batch256")):
            t = timing[key]
            rows.append((name, size, f"{t['p50_ms']:.2f}", f"{t['p90_ms']:.2f}", f"{t['faces_per_s']:,.0f}"))
    lines += markdown_table(("model alone (engine)", "batch", "p50 ms", "p90 ms", "faces/s"), rows)
    if "note" in fer:
        lines += [f"fer package: {fer['note']}.", ""]
    return lines


def format_training(training: dict) -> list[str]:
    """The training section: images/s, step and data times, per architecture and precision."""
    pipeline = training["input_pipeline"]
    lines = [
        "## Training",
        "",
        (
            f"Device {training['device']}, batch {training['batch_size']}, {training['warmup_steps']} warm-up + "
            f"{training['timed_steps']} timed steps; {training['note']}."
        ),
        "",
    ]
    rows = []
    for run in training["runs"]:
        variant = (run["architecture"], run["precision"], "yes" if run["xla"] else "no")
        if "error" in run:
            rows.append((*variant, f"failed: {run['error']}", "", "", "", "", ""))
            continue
        rows.append(
            (
                *variant,
                f"{run['images_per_s']:,.0f}",
                f"{run['step_ms']:.1f}",
                f"{pipeline['ms_per_batch']:.1f}",
                f"{run['epoch_s']:.1f}",
                f"{run['warmup_s']:.1f}",
                f"{run['parameters']:,}",
            )
        )
    header = (
        "architecture",
        "precision",
        "XLA",
        "images/s",
        "step ms",
        "data ms/batch",
        "epoch s",
        "warm-up s",
        "params",
    )
    lines += markdown_table(header, rows)
    lines += [
        (
            f"Input pipeline alone: {pipeline['ms_per_batch']:.2f} ms per batch "
            f"({pipeline['images_per_s']:,.0f} images/s)."
        ),
        "",
    ]
    return lines
