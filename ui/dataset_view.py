"""The Dataset page's widgets: the source picker, the header and metrics, and each tab's body.

Widgets only; the numbers come from :mod:`fertools.stats`, the figures from :mod:`ui.dataset_figures`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fertools import data, stats
from fertools.constants import FER2013_CLASSES, data_dir
from fertools.synthetic import SYNTHETIC_NOTE
from fertools.users import QuotaError, Quotas, hosted
from ui import common, projector
from ui import dataset_figures as figures
from ui.identity import count_upload, literal

UPLOAD = "⬆️ Upload a file…"
SAMPLE_COLUMNS = 8  # 8 faces at 2x fit the main column without being shrunk
#: Largest/smallest class ratio up to which the classes count as balanced.
BALANCED_RATIO = 1.2


@st.cache_data(max_entries=4, show_spinner=False)
def _summary(source: str, size: int, _dataset: data.Dataset) -> dict:
    """Histograms and mean faces of a dataset; keyed by (source, size), computed once per dataset."""
    n_classes = len(_dataset.classes)
    split_index = {name: i for i, name in enumerate(_dataset.splits)}
    split_groups = np.array([split_index[name] for name in _dataset.split], dtype=np.int64)
    edges, by_class = stats.pixel_histograms(_dataset.images, _dataset.labels, n_classes)
    _, by_split = stats.pixel_histograms(_dataset.images, split_groups, len(split_index))
    means, counts = stats.mean_faces(_dataset.images, _dataset.labels, n_classes)
    mean, std = stats.pixel_mean_std(_dataset.images)
    return {
        "edges": edges,
        "by_class": by_class,
        "by_split": by_split,
        "means": means,
        "counts": counts,
        "mean": mean,
        "std": std,
    }


def _reshuffle() -> None:
    """New sample faces: the next shuffle seed."""
    st.session_state["sample_seed"] = st.session_state.get("sample_seed", 0) + 1


def _use(source: str, label: str) -> None:
    """Make this dataset the one every page uses, and say so."""
    common.use_dataset(source, label)
    st.toast(f"Now using {literal(label)} on every page.", icon="✅")


def _upload(current: str) -> tuple[str, str]:
    """The uploader: the (source, label) of the file sent, or of the upload in use; stops until one is."""
    uploaded = st.file_uploader(
        "CSV (fer2013.csv or label,p0..p2303), a zip of <class>/ image folders, or a FER Lab .npz",
        type=["csv", "zip", "npz"],
    )
    if hosted():
        st.caption(
            "Where your upload goes: it stays in this browser session's memory on the server, never "
            "on its disk, and is forgotten when you close or reload the page. Training on it saves a "
            "copy with your runs, which only you and the teacher can reach; deleting your last run "
            "that uses it deletes that copy. Uploads may add up to "
            f"{Quotas.from_env().max_upload_mb} MB per session."
        )
    if uploaded is not None:
        count_upload(uploaded.file_id, uploaded.size)  # before parsing: QuotaError if over
        with st.spinner(f"Reading {literal(uploaded.name)}…"):
            return common.load_upload(uploaded.name, uploaded.getvalue()), uploaded.name
    if current.startswith("upload:"):
        return current, st.session_state["dataset_label"]
    st.info(
        "Choose a file to upload. Large files (the 300 MB fer2013.csv) are better put in the data folder."
    )
    st.stop()


def pick_source() -> tuple[str, str, data.Dataset]:
    """The source picker and the (source, label, dataset) it chose; stops with one sentence if it fails."""
    sources = common.available_sources()
    options = [*sources, UPLOAD]
    current = st.session_state["dataset_source"]
    if current.startswith("upload:"):
        default = UPLOAD
    else:
        default = next((label for label, source in sources.items() if source == current), options[0])
    choice = st.selectbox(
        "Source",
        options,
        index=options.index(default),
        key="dataset_choice",
        help=f"The built-in synthetic set, everything found under the data folder ({data_dir()}), or an upload.",
    )
    try:
        source, label = _upload(current) if choice == UPLOAD else (sources[choice], choice)
        with st.spinner(
            f"Loading {literal(label)}… (a large CSV takes several seconds the first time, then comes from a cache)"
        ):
            dataset = common.get_dataset(source)
    except QuotaError as error:
        st.error(str(error))
        st.stop()
    except (data.DatasetError, OSError, ValueError) as error:
        st.error(f"Could not load this dataset: {literal(error)}")
        st.stop()
    return source, label, dataset


def show_header(source: str, label: str, dataset: data.Dataset) -> None:
    """The dataset's name and description, the button that puts it in use, and its notes."""
    header, action = st.columns([4, 1], vertical_alignment="center")
    header.markdown(f"**{literal(label)}** · {dataset.describe()}")
    if st.session_state["dataset_source"] == source:
        action.success("In use", icon="✅")
    else:
        action.button(
            "Use this dataset", type="primary", on_click=_use, args=(source, label), width="stretch"
        )
    if dataset.synthetic:
        st.info(
            f"**Synthetic data.** {SYNTHETIC_NOTE} Use FER2013 for real faces (see the Home page).", icon="🎨"
        )
    for note in dataset.notes:
        if note != SYNTHETIC_NOTE:
            st.caption(literal(note))  # an uploaded .npz may carry notes of its own


def show_metrics(dataset: data.Dataset, counts: stats.ClassCounts) -> None:
    """One row of metrics: faces, classes, each split's size, rejected rows."""
    metric_columns = st.columns(2 + len(counts.splits) + 1)
    metric_columns[0].metric("Faces", f"{len(dataset):,}")
    metric_columns[1].metric("Classes", len(dataset.classes))
    for column, (name, size) in zip(metric_columns[2:], counts.split_sizes.items()):
        column.metric(f"{name} split", f"{size:,}", help=f"{size / max(len(dataset), 1):.0%} of the faces")
    metric_columns[-1].metric("Rejected rows", f"{len(dataset.rejected):,}")


def show_balance(counts: stats.ClassCounts) -> None:
    """The class-balance tab: the bar chart, what an imbalance costs, the table per class and split."""
    table = pd.DataFrame(counts.rows())
    imbalance = counts.imbalance()
    figure = figures.class_balance(counts, imbalance, BALANCED_RATIO)
    projector.chart(figure, key="class_balance_chart")
    if imbalance is not None and imbalance.ratio > BALANCED_RATIO:
        size = counts.split_sizes.get("train", int(counts.totals.sum()))
        where = figures.measured_on(counts)
        st.caption(
            f"A model that always answers *{literal(imbalance.largest)}* is right "
            f"{imbalance.largest_count / max(size, 1):.0%} of the time on the {where}, and rare classes "
            "get few gradient updates. The Train page can weight the loss by class to compensate."
        )
    pivot = table.pivot(index="class", columns="split", values="count").reindex(list(counts.classes))
    pivot = pivot[list(counts.splits)]
    pivot["total"] = pivot.sum(axis=1)
    pivot["share"] = pivot["total"] / max(int(pivot["total"].sum()), 1)
    column_config = {name: common.COUNT_COLUMN for name in [*counts.splits, "total"]}
    st.dataframe(
        pivot, column_config={**column_config, "share": st.column_config.NumberColumn(format="percent")}
    )


def show_samples(dataset: data.Dataset, counts: stats.ClassCounts) -> None:
    """The samples tab: pick a class, split and page of faces, reshuffle, and see them."""
    class_column, split_column, size_column, page_column, shuffle_column = st.columns(
        [2, 2, 1, 1, 1], vertical_alignment="bottom"
    )
    class_index = class_column.selectbox(
        "Class",
        range(len(dataset.classes)),
        format_func=lambda i: f"{dataset.classes[i]} ({int(counts.totals[i]):,})",
        key="sample_class",
    )
    split_choice = split_column.selectbox("Split", ["all splits", *counts.splits], key="sample_split")
    per_page = size_column.selectbox("Per page", [24, 48, 96], key="sample_per_page")
    shuffle_column.button("🔀 Reshuffle", on_click=_reshuffle, width="stretch")
    seed = st.session_state.get("sample_seed", 0)
    mask = None if split_choice == "all splits" else dataset.split == split_choice
    _, pages = stats.sample_page(dataset.labels, class_index, 0, per_page, seed, mask)
    # One page widget per view: a new class, split or shuffle starts again at page 1.
    page = page_column.number_input(
        f"Page (of {pages})",
        min_value=1,
        max_value=pages,
        value=1,
        key=f"sample_page_{class_index}_{split_choice}_{per_page}_{seed}",
    )
    rows, _ = stats.sample_page(dataset.labels, class_index, int(page) - 1, per_page, seed, mask)
    if len(rows) == 0:
        st.info(f"No {literal(dataset.classes[class_index])} faces in {split_choice}.")
    else:
        st.image(
            stats.montage(dataset.images[rows], SAMPLE_COLUMNS, scale=2),
            caption=f"{literal(dataset.classes[class_index])}, {split_choice}: page {page} of {pages}, "
            f"shuffle seed {seed} (shown 2× with square pixels)",
        )


def show_pixels(source: str, dataset: data.Dataset) -> None:
    """The pixels tab: intensity histograms per class or split, and the mean face of each class."""
    with st.spinner("Computing histograms and mean faces…"):
        facts = _summary(source, len(dataset), dataset)
    group_by = st.radio("Histogram per", ["class", "split"], horizontal=True, key="histogram_groups")
    names = list(dataset.classes) if group_by == "class" else list(dataset.splits)
    fractions = facts["by_class"] if group_by == "class" else facts["by_split"]
    figure = figures.pixel_histogram(facts["edges"], fractions, names, group_by)
    projector.chart(figure, key="pixel_histogram_chart")
    st.caption(
        f"All pixels: mean {facts['mean']:.1f}, std {facts['std']:.1f}. "
        "Models rescale 0..255 to 0..1 inside their graph, so they see these raw values."
    )

    st.markdown("**Mean face per class**")
    relative = st.toggle(
        "Show the difference from the average face",
        key="mean_face_difference",
        help="Mid-grey: no difference; lighter or darker: where this class's average face differs.",
    )
    means, mean_counts = facts["means"], facts["counts"]
    pictures = stats.difference_faces(means, mean_counts) if relative else np.rint(means).astype(np.uint8)
    st.image(
        [stats.upscale(picture, 2) for picture in pictures],
        caption=[f"{literal(name)} ({int(n):,})" for name, n in zip(dataset.classes, mean_counts)],
    )


def show_rejected(dataset: data.Dataset) -> None:
    """Counts per reason and the first few examples of what the loader skipped."""
    if not dataset.rejected:
        st.success("No rows or files were rejected: every row parsed as a 48×48 face with a known label.")
        return
    st.warning(f"{len(dataset.rejected):,} rows or files were skipped; the others loaded normally.")
    reasons = pd.DataFrame(
        [{"reason": reason, "count": n} for reason, n in dataset.rejected_counts().items()]
    )
    st.dataframe(reasons, hide_index=True, column_config={"count": common.COUNT_COLUMN})
    st.markdown("**First examples**")
    st.dataframe(
        pd.DataFrame([{"where": r.where, "reason": r.reason} for r in dataset.rejected[:10]]), hide_index=True
    )


def show_export(label: str, dataset: data.Dataset) -> None:
    """The export tab: download the dataset as .npz or as a FER2013-style CSV, built on click."""
    stem = Path(label).stem.replace(" ", "_") or "dataset"

    def npz_bytes() -> bytes:
        """The dataset as a FER Lab .npz, splits included."""
        buffer = io.BytesIO()
        data.save_npz(dataset, buffer)
        return buffer.getvalue()

    st.markdown(
        "Download this dataset, splits included: the **.npz** loads fastest anywhere in FER Lab "
        "(and with `numpy.load`); the **CSV** has FER2013's `emotion,pixels,Usage` columns."
    )
    npz_column, csv_column = st.columns(2)
    npz_column.download_button(
        "⬇️ Download .npz",
        data=npz_bytes,
        file_name=f"{stem}.npz",
        mime="application/octet-stream",
        on_click="ignore",
        width="stretch",
    )
    npz_column.caption(f"about {len(dataset) * dataset.images[0].size / 1e6:,.1f} MB")
    csv_column.download_button(
        "⬇️ Download FER2013-style CSV",
        data=lambda: data.to_fer2013_csv(dataset),
        file_name=f"{stem}_fer2013.csv",
        mime="text/csv",
        on_click="ignore",
        width="stretch",
    )
    csv_column.caption(f"about {len(dataset) * 8.5e-3:,.1f} MB; built when you click, which takes a moment")
    if tuple(dataset.classes) != FER2013_CLASSES:
        st.caption(
            f"These classes ({literal(', '.join(dataset.classes))}) are not FER2013's ({', '.join(FER2013_CLASSES)}): "
            "the CSV's emotion column holds this dataset's own label indices."
        )
