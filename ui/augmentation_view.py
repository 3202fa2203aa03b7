"""The Augmentation page's widgets: the settings panel that makes an ``AugmentConfig``, and its preview.

Widgets only; the augmented copies come from :func:`fertools.augment.preview`, the same Keras
layers training uses.
"""

from __future__ import annotations

import streamlit as st

from fertools import data, stats
from fertools.augment import preview
from fertools.config import NO_AUGMENTATION, AugmentConfig
from ui.common import get_dataset
from ui.identity import literal

#: One slider per numeric AugmentConfig field: (field, label, max, step, help).
SLIDERS = (
    (
        "rotation",
        "Rotation (± degrees)",
        45.0,
        1.0,
        "Turn each face by a random angle up to this many degrees.",
    ),
    ("zoom", "Zoom (± fraction)", 0.5, 0.05, "Zoom in or out by up to this fraction of the face size."),
    (
        "width_shift",
        "Width shift (± fraction)",
        0.5,
        0.05,
        "Move the face left or right by up to this fraction.",
    ),
    (
        "height_shift",
        "Height shift (± fraction)",
        0.5,
        0.05,
        "Move the face up or down by up to this fraction.",
    ),
    (
        "brightness",
        "Brightness (± fraction)",
        0.5,
        0.05,
        "Brighten or darken by up to this fraction of 0..255.",
    ),
    ("contrast", "Contrast (± fraction)", 0.9, 0.05, "Raise or lower the contrast by up to this factor."),
    (
        "erasing",
        "Random erasing (share of faces)",
        1.0,
        0.05,
        "This share of faces gets one rectangle of noise.",
    ),
)
PICTURE_SCALE = 2


def _set_controls(config: AugmentConfig) -> None:
    """Put a config into the widgets (a callback, so it runs before they are drawn)."""
    for name, value in config.to_dict().items():
        st.session_state[f"aug_{name}"] = value


def _reroll() -> None:
    """New random copies of the same faces."""
    st.session_state["aug_seed"] = int(st.session_state.get("aug_seed", 0)) + 1


def _other_faces() -> None:
    """Other faces from the dataset; their copies keep the augmentation seed."""
    st.session_state["aug_faces"] = int(st.session_state.get("aug_faces", 0)) + 1


def _use_for_training(config: AugmentConfig) -> None:
    """Hand this config to the Train page, and say so."""
    st.session_state["augment_config"] = config.to_dict()
    st.toast("The Train page will use these augmentation settings.", icon="✅")


@st.cache_data(max_entries=32, show_spinner=False)
def _augmented(source: str, rows: tuple[int, ...], settings: dict, copies: int, seed: int, _faces):
    """``preview`` of the chosen faces; keyed by the dataset, rows, settings and seed, not the pixels."""
    return preview(_faces, AugmentConfig.from_dict(settings), n=copies, seed=seed)


def start_controls() -> None:
    """Start the widgets from the settings in use for training (or the defaults), once per visit."""
    stored = st.session_state.get("augment_config")
    start = AugmentConfig.from_dict(stored) if stored else AugmentConfig()
    for name, value in start.to_dict().items():
        st.session_state.setdefault(f"aug_{name}", bool(value) if name == "horizontal_flip" else float(value))
    st.session_state.setdefault("aug_seed", 0)


def show_settings() -> AugmentConfig:
    """The settings panel: one widget per transform, presets, and handing them to the Train page."""
    st.subheader("Settings")
    values = {}
    for name, label, maximum, step, text in SLIDERS:
        number_format = "%.0f°" if name == "rotation" else "%.2f"
        values[name] = st.slider(
            label, 0.0, maximum, step=step, format=number_format, key=f"aug_{name}", help=text
        )
    values["horizontal_flip"] = st.toggle(
        "Horizontal flip",
        key="aug_horizontal_flip",
        help="Mirror half of the faces: a smile is still a smile.",
    )
    config = AugmentConfig(**values)
    default_column, off_column = st.columns(2)
    default_column.button("Defaults", on_click=_set_controls, args=(AugmentConfig(),), width="stretch")
    off_column.button("All off", on_click=_set_controls, args=(NO_AUGMENTATION,), width="stretch")

    st.button(
        "✅ Use for training", type="primary", on_click=_use_for_training, args=(config,), width="stretch"
    )
    if st.session_state.get("augment_config") == config.to_dict():
        st.success("The Train page will use these settings.")
    elif st.session_state.get("augment_config"):
        st.info("The Train page uses other settings: press **Use for training** to replace them.")
    else:
        st.info("The Train page uses its defaults until you press **Use for training**.")
    with st.expander("What the Train page receives"):
        st.json(config.to_dict())
    return config


def show_preview(config: AugmentConfig) -> None:
    """The preview panel: faces of the dataset in use, each beside random augmentations of it."""
    st.subheader("Preview")
    try:
        dataset = get_dataset()
    except (data.DatasetError, OSError, ValueError) as error:
        st.error(f"Could not load the dataset in use: {error}")
        st.stop()
    class_column, count_column, copies_column = st.columns(3)
    class_choice = class_column.selectbox(
        "Faces of", ["every class", *dataset.classes], key="aug_class", help="Taken from the training split."
    )
    originals = count_column.slider("Faces", 2, 8, 5, key="aug_originals")
    copies = copies_column.slider("Copies each", 2, 8, 6, key="aug_copies")
    seed_column, reroll_column, faces_column = st.columns([2, 1, 1], vertical_alignment="bottom")
    seed = seed_column.number_input(
        "Augmentation seed", min_value=0, step=1, key="aug_seed", help="Same seed, same random copies."
    )
    reroll_column.button(
        "🎲 Re-roll", on_click=_reroll, width="stretch", help="Same faces, new random copies of each."
    )
    faces_column.button(
        "🔀 Other faces", on_click=_other_faces, width="stretch", help="Other faces, same seed."
    )

    label = None if class_choice == "every class" else dataset.classes.index(class_choice)
    train = dataset.split == "train" if "train" in dataset.splits else None
    rows, _ = stats.sample_page(
        dataset.labels, label, 0, originals, int(st.session_state.get("aug_faces", 0)), train
    )
    if len(rows) == 0:
        st.info(f"The dataset in use has no {class_choice} faces in its training split.")
        st.stop()
    faces = dataset.images[rows]
    with st.spinner("Augmenting…"):
        copies_grid = _augmented(
            st.session_state["dataset_source"],
            tuple(rows.tolist()),
            config.to_dict(),
            copies,
            int(seed),
            faces,
        )
    st.image(
        stats.beside(faces, copies_grid, scale=PICTURE_SCALE),
        caption=f"left: the original; right: {copies} random augmentations of it (seed {seed})"
        + ("; every transform is off" if config.is_identity else ""),
    )
    names = ", ".join(dataset.classes[i] for i in dataset.labels[rows])
    st.caption(f"Faces: {literal(names)}. {literal(st.session_state['dataset_label'])}.")
