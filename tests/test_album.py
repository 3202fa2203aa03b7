"""Your own faces: the per-user album, fine-tuning from a model folder, before-and-after scores."""

from __future__ import annotations

import numpy as np
import pytest

from fertools import train
from fertools.album import MIN_PER_CLASS, FaceAlbum, compare, fine_tune_config
from fertools.config import TrainConfig
from fertools.constants import DEFAULT_MODEL_DIR, FER2013_CLASSES
from fertools.limits import MAX_ALBUM_FACES
from fertools.modelcard import load_model_dir, read_card


def faces(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 48, 48), dtype=np.uint8)


def test_an_album_keeps_its_faces_and_is_its_owners_alone(ferlab_dirs):
    mine, theirs = FaceAlbum.of("u-alice"), FaceAlbum.of("u-bob")
    for face, label in zip(faces(4), ["happy", "sad", "happy", "neutral"], strict=True):
        mine.add(face, label)
    theirs.add(faces(1, seed=9)[0], "fear")
    album = mine.read()
    assert len(album) == 4 and len(theirs.read()) == 1
    assert album.counts() == {**dict.fromkeys(FER2013_CLASSES, 0), "happy": 2, "sad": 1, "neutral": 1}
    np.testing.assert_array_equal(album.faces, faces(4))
    assert mine.path.parent.name == "u-alice" and ferlab_dirs["runs"] in mine.path.parents

    assert len(mine.remove(1)) == 3
    assert mine.read().counts()["sad"] == 0
    mine.clear()
    assert len(mine.read()) == 0 and not mine.path.exists()
    assert len(theirs.read()) == 1


@pytest.mark.parametrize("owner", ["../escape", "U-UPPER", "", "a/b"])
def test_an_album_path_comes_only_from_a_user_id(owner):
    with pytest.raises(ValueError, match="not a user id"):
        FaceAlbum.of(owner)


def test_an_album_refuses_what_is_no_face_and_stops_when_full(monkeypatch):
    album = FaceAlbum.of("u-carol")
    with pytest.raises(ValueError, match="not one of the expressions"):
        album.add(faces(1)[0], "bored")
    with pytest.raises(ValueError, match="48x48 grayscale"):
        album.add(np.zeros((64, 64), np.uint8), "happy")
    monkeypatch.setattr("fertools.album.MAX_ALBUM_FACES", 2)
    album.add(faces(1)[0], "happy")
    album.add(faces(1)[0], "happy")
    with pytest.raises(ValueError, match="album is full"):
        album.add(faces(1)[0], "happy")
    assert MAX_ALBUM_FACES >= 7 * 20  # room for a real album of every expression


def test_a_damaged_album_reads_as_empty():
    album = FaceAlbum.of("u-dave")
    album.path.parent.mkdir(parents=True)
    album.path.write_bytes(b"PK\x03\x04 not really a zip")
    assert len(album.read()) == 0
    album.add(faces(1)[0], "surprise")  # and recording starts again
    assert len(album.read()) == 1


def test_fine_tuning_needs_two_expressions_recorded():
    album = FaceAlbum.of("u-erin")
    for face in faces(MIN_PER_CLASS):
        album.add(face, "happy")
    assert "two different expressions" in album.read().ready_to_fine_tune()
    for face in faces(MIN_PER_CLASS, seed=1):
        album.add(face, "sad")
    assert album.read().ready_to_fine_tune() is None


def test_a_start_folder_must_be_a_model_folder(tmp_path):
    with pytest.raises(ValueError, match="not a model folder"):
        TrainConfig(start_from=str(tmp_path)).validate()
    with pytest.raises(ValueError, match="is not the network being trained"):
        train.load_start_weights(train.models.create("mini_xception"), str(DEFAULT_MODEL_DIR))


@pytest.mark.slow
def test_fine_tuning_starts_from_the_model_and_learns_the_album(tiny_builtin, tmp_path):
    album = FaceAlbum.of("u-frank")
    for face, label in zip(tiny_builtin.images[:28], tiny_builtin.labels[:28], strict=True):
        album.add(face, tiny_builtin.classes[label])
    config = fine_tune_config(DEFAULT_MODEL_DIR)
    shipped_architecture = read_card(DEFAULT_MODEL_DIR).architecture
    assert config.start_from and config.val_fraction == 0 and config.architecture == shipped_architecture
    config.validate()

    # Starting from the shipped weights, not from scratch: before any step the copy is exact.
    shipped, _ = load_model_dir(DEFAULT_MODEL_DIR)
    trainer = train.build_trainer(config, 7, (48, 48, 1), 28, seed=0)
    for ours, theirs in zip(trainer.model.get_weights(), shipped.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)

    train.train(album.dataset(), config, tmp_path / "run")
    tuned, card = load_model_dir(tmp_path / "run" / "model")
    result = compare(
        lambda x: shipped.predict(x[..., None], verbose=0),
        lambda x: tuned.predict(x[..., None], verbose=0),
        album.read(),
    )
    # The shipped model knows real faces, not these cartoons; after 20 short epochs it knows them.
    assert result.accuracy_after >= result.accuracy_before + 0.3
    assert result.accuracy_after >= 0.8
    assert len(result.rows()) == 28 and set(result.rows()[0]) == {
        "recorded",
        "before",
        "before_p",
        "after",
        "after_p",
    }
