import gzip
import shutil
from pathlib import Path

import aeon.datasets
import numpy as np
import pytest

from arl_fast.data import DATA_ENV, load_uea, to_ts2vec

BUNDLED = Path(aeon.datasets.__file__).parent / "data"


@pytest.fixture(autouse=True)
def no_user_data(monkeypatch, tmp_path):
    """Keep the user's data folders out of these tests."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv("AEON_DATA", str(tmp_path / "aeon_cache"))


def copy_basic_motions(root: Path, name: str, compress: bool) -> None:
    """BasicMotions under another name, so a load can only have come from ``root``."""
    (root / name).mkdir(parents=True)
    for split in ("TRAIN", "TEST"):
        source = BUNDLED / "BasicMotions" / f"BasicMotions_{split}.ts"
        if compress:
            with open(source, "rb") as src, gzip.open(root / name / f"{name}_{split}.ts.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(source, root / name / f"{name}_{split}.ts")


def assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_bundled_dataset_in_ts2vec_layout():
    data = load_uea("BasicMotions", download=False)
    assert data.X_train.shape == (40, 100, 6) and data.X_test.shape == (40, 100, 6)
    assert data.X_train.dtype == np.float32
    assert list(data.classes) == ["badminton", "running", "standing", "walking"]
    assert set(data.y_train) == set(data.y_test) == {0, 1, 2, 3}
    # Each channel standardised with the train split's statistics, as TS2Vec does for UEA.
    flat = data.X_train.reshape(-1, 6)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=0), 1, atol=1e-4)
    raw, labels = aeon.datasets.load_classification("BasicMotions", split="test")
    raw_train, _ = aeon.datasets.load_classification("BasicMotions", split="train")
    mean, std = raw_train.mean(axis=(0, 2)), raw_train.std(axis=(0, 2))
    expected = (raw.transpose(0, 2, 1) - mean) / std
    np.testing.assert_allclose(data.X_test, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(data.classes[data.y_test], labels)


def test_variable_length_dataset_is_nan_padded():
    data = load_uea("JapaneseVowels", download=False)
    assert data.X_train.shape[1:] == (29, 12) and data.X_test.shape[1] == 29
    observed = ~np.isnan(data.X_train).all(axis=2)
    assert not observed.all()  # shorter series are padded ...
    assert observed[:, 0].all()  # ... at the end
    lengths = observed.sum(axis=1)
    assert (observed == (np.arange(29) < lengths[:, None])).all()


@pytest.mark.parametrize("compress", [False, True])
def test_data_dir_plain_or_gzipped(tmp_path, compress):
    copy_basic_motions(tmp_path / "uea", "Motions", compress)
    assert_same(load_uea("Motions", tmp_path / "uea", download=False), load_uea("BasicMotions", download=False))


def test_environment_folder(tmp_path, monkeypatch):
    copy_basic_motions(tmp_path / "env", "Motions", compress=False)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert_same(load_uea("Motions", download=False), load_uea("BasicMotions", download=False))


def test_missing_dataset_names_every_place(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_uea("NoSuchData", tmp_path / "mine", download=False)
    message = str(error.value)
    for place in (tmp_path / "mine", BUNDLED, tmp_path / "aeon_cache"):
        assert str(place / "NoSuchData") in message
    with pytest.raises(FileNotFoundError, match="not in aeon's list"):
        load_uea("NoSuchData", tmp_path / "mine")


def test_failed_download_leaves_no_empty_folder(tmp_path, monkeypatch):
    from aeon.datasets.tsc_datasets import tsc_zenodo

    assert "Heartbeat" in tsc_zenodo and not (BUNDLED / "Heartbeat").exists()

    def offline(name, split=None, extract_path=None, **kwargs):
        (tmp_path / "aeon_cache" / name).mkdir(parents=True)  # what aeon leaves behind offline
        raise ValueError("Could not download files for Heartbeat: URLError")

    monkeypatch.setattr(aeon.datasets, "load_classification", offline)
    with pytest.raises(FileNotFoundError, match="download failed.*URLError") as error:
        load_uea("Heartbeat")
    assert "ARL_FAST_DATA" in str(error.value)
    assert not (tmp_path / "aeon_cache" / "Heartbeat").exists()


def test_half_present_dataset_is_not_found(tmp_path):
    copy_basic_motions(tmp_path, "Motions", compress=False)
    (tmp_path / "Motions" / "Motions_TEST.ts").unlink()
    with pytest.raises(FileNotFoundError, match="Motions"):
        load_uea("Motions", tmp_path, download=False)


def test_unseen_test_label(tmp_path):
    copy_basic_motions(tmp_path, "Motions", compress=False)
    test_file = tmp_path / "Motions" / "Motions_TEST.ts"
    lines = test_file.read_text().splitlines()
    last = lines[-1].rsplit(":", 1)
    lines[-1] = f"{last[0]}:swimming"
    test_file.write_text("\n".join(lines).replace("@classLabel true ", "@classLabel true swimming ") + "\n")
    with pytest.raises(ValueError, match="swimming"):
        load_uea("Motions", tmp_path, download=False)


def test_bad_names():
    for name in ("", "../BasicMotions"):
        with pytest.raises(ValueError, match="name"):
            load_uea(name, download=False)
    with pytest.raises(TypeError, match="name"):
        load_uea(3, download=False)


def test_to_ts2vec():
    X = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)  # aeon: (n, channels, time)
    out = to_ts2vec(X)
    assert out.shape == (2, 4, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1, 2], X[1, :, 2])
    ragged = to_ts2vec([np.ones((2, 3)), np.zeros((2, 5))])
    assert ragged.shape == (2, 5, 2)
    assert np.isnan(ragged[0, 3:]).all() and (ragged[0, :3] == 1).all() and (ragged[1] == 0).all()
    with pytest.raises(ValueError, match="n_channels"):
        to_ts2vec([np.ones((2, 3)), np.ones((3, 3))])
    with pytest.raises(ValueError, match="n_cases"):
        to_ts2vec(np.ones((2, 3)))
    with pytest.raises(TypeError):
        to_ts2vec("BasicMotions")
