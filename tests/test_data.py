"""fer_search.data: every source form, class sets, val carving, cache, FER+, demo, bad input."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_search.config import EMOTIONS
from fer_search.data import (
    FERData,
    cache_dir,
    format_summary,
    load_data,
    make_demo,
    resolve_data_path,
    summarize,
)
from fer_search.data import load as load_module
from fer_search.errors import UserError

USAGES = ("Training", "PublicTest", "PrivateTest")
REAL_CSV = Path(__file__).resolve().parents[2] / "shared/data/fer2013/fer2013.csv.gz"
REAL_FERPLUS = Path(__file__).resolve().parents[2] / "shared/data/ferplus/fer2013new.csv"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never write the user's cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FER_SEARCH_CACHE", str(folder))
    return folder


def make_rows(per_class: int = 2, usages: tuple[str, ...] = USAGES, seed: int = 0) -> list:
    """(label, pixel array, usage) rows: every class ``per_class`` times in every usage."""
    rng = np.random.default_rng(seed)
    return [
        (label, rng.integers(0, 256, 2304), usage)
        for usage in usages
        for label in range(7)
        for _ in range(per_class)
    ]


def csv_text(
    rows: list, columns: tuple[str, ...] = ("emotion", "pixels", "Usage"), header: str | None = None
) -> str:
    lines = [header if header is not None else ",".join(columns)]
    for label, pixels, usage in rows:
        cells = {"emotion": str(label), "pixels": " ".join(map(str, pixels)), "Usage": usage}
        lines.append(",".join(cells[c.strip()] for c in columns))
    return "\n".join(lines) + "\n"


def write(path: Path, text: str | bytes, compress: str = "") -> Path:
    """Write ``text`` to ``path`` (+ ".gz"/".zip" when compressed); return the written path."""
    raw = text.encode() if isinstance(text, str) else text
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress == ".gz":
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    elif compress == ".zip":
        path = path.with_name(path.name + ".zip")
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(path.name.removesuffix(".zip"), raw)
    else:
        path.write_bytes(raw)
    return path


def kaggle_csv(
    folder: Path, rows: list | None = None, name: str = "fer2013.csv", compress: str = ""
) -> Path:
    return write(folder / name, csv_text(rows if rows is not None else make_rows()), compress)


def expected_images(rows: list, usage: str) -> np.ndarray:
    return np.stack([p.reshape(48, 48) for _, p, u in rows if u == usage]).astype(np.uint8)


def one_line_error(excinfo: pytest.ExceptionInfo[UserError], *needles: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# --------------------------------------------------------------------------- source forms


@pytest.mark.parametrize("compress", ["", ".gz", ".zip"])
def test_kaggle_csv_maps_usage_to_splits(tmp_path: Path, compress: str) -> None:
    rows = make_rows()
    path = kaggle_csv(tmp_path, rows, compress=compress)
    loaded = load_data(path, cache=False)
    assert list(loaded.splits) == ["train", "val", "test"]
    assert loaded.class_names == EMOTIONS
    for split, usage in zip(["train", "val", "test"], USAGES, strict=True):
        part = loaded.splits[split]
        assert part.images.dtype == np.uint8 and part.images.flags.c_contiguous
        assert part.labels.dtype == np.int64 and len(part) == 14
        assert part.counts() == {name: 2 for name in EMOTIONS}
        np.testing.assert_array_equal(part.images, expected_images(rows, usage))
        np.testing.assert_array_equal(part.labels, np.repeat(np.arange(7), 2))
        assert part.soft_labels is None
    assert loaded.source.startswith(str(path))  # a zip adds ":member"


def test_compression_is_detected_from_content_and_multi_member_gzip(tmp_path: Path) -> None:
    rows = make_rows()
    text = csv_text(rows).encode()
    half = text.index(b"\n", len(text) // 2) + 1
    path = tmp_path / "fer2013.csv"  # gzip data without a .gz name, in two gzip members
    path.write_bytes(gzip.compress(text[:half]) + gzip.compress(text[half:]))
    loaded = load_data(path, cache=False)
    np.testing.assert_array_equal(loaded.splits["test"].images, expected_images(rows, USAGES[2]))


def test_crlf_quotes_and_trailing_blank_lines(tmp_path: Path) -> None:
    rows = make_rows(1)
    lines = csv_text(rows).splitlines()
    quoted = [lines[0]] + [",".join(f'"{c}"' for c in line.split(",")) for line in lines[1:]]
    path = write(tmp_path / "fer2013.csv", "\r\n".join(quoted) + "\r\n\r\n")
    loaded = load_data(path, cache=False)
    np.testing.assert_array_equal(loaded.splits["val"].images, expected_images(rows, USAGES[1]))


def test_icml_header_with_leading_spaces(tmp_path: Path) -> None:
    rows = make_rows()
    text = csv_text(rows, columns=("emotion", " Usage", " pixels"))
    assert text.startswith("emotion, Usage, pixels\n")
    loaded = load_data(write(tmp_path / "icml_face_data.csv", text), cache=False)
    np.testing.assert_array_equal(loaded.splits["val"].images, expected_images(rows, USAGES[1]))
    assert len(loaded.splits["test"]) == 14


def test_leading_zeros_and_extra_spaces_are_accepted(tmp_path: Path) -> None:
    rows = make_rows(1)
    text = csv_text(rows).replace(",0 ", ",000 ", 1).replace(" 1 ", "  01 ", 1)
    loaded = load_data(write(tmp_path / "fer2013.csv", text), cache=False)
    np.testing.assert_array_equal(loaded.splits["train"].images, expected_images(rows, USAGES[0]))


def test_challenge_train_with_labelled_test(tmp_path: Path) -> None:
    rows = make_rows(3, usages=("Training",))
    test_rows = make_rows(1, usages=("PrivateTest",), seed=1)
    write(tmp_path / "train.csv", csv_text(rows, columns=("emotion", "pixels")))
    write(tmp_path / "test.csv", csv_text(test_rows, columns=("emotion", "pixels")))
    loaded = load_data(tmp_path / "train.csv", cache=False)
    assert list(loaded.splits) == ["train", "val", "test"]
    assert len(loaded.splits["train"]) + len(loaded.splits["val"]) == 21
    np.testing.assert_array_equal(
        loaded.splits["test"].images, expected_images(test_rows, "PrivateTest")
    )
    assert any("val split carved from train" in note for note in loaded.notes)


@pytest.mark.parametrize("test_file", ["unlabelled", "absent"])
def test_challenge_train_without_labelled_test(tmp_path: Path, test_file: str) -> None:
    rows = make_rows(3, usages=("Training",))
    write(tmp_path / "train.csv", csv_text(rows, columns=("emotion", "pixels")))
    if test_file == "unlabelled":
        write(tmp_path / "test.csv", csv_text(make_rows(1), columns=("pixels",)))
    loaded = load_data(tmp_path / "train.csv", cache=False)
    assert list(loaded.splits) == ["train", "val"]
    assert any("no labelled test split" in note for note in loaded.notes)


def image_tree(root: Path, per_class: int = 3, odd_image: bool = True) -> Path:
    """train/ and test/ folders with mixed-case and alias class names; one 64x64 RGB image."""
    names = ["Angry", "DISGUST", "fearful", "Happiness", "sad", "Surprised", "neutral"]
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in names:
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(per_class):
                pixels = rng.integers(0, 256, (48, 48), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.png")
            (folder / ".DS_Store").write_bytes(b"junk")
    if odd_image:
        rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "train" / "Happiness" / "big.jpg")
    return root


def test_image_folders(tmp_path: Path) -> None:
    root = image_tree(tmp_path / "faces", per_class=10)
    loaded = load_data(root, cache=False)
    assert list(loaded.splits) == ["train", "val", "test"]
    assert loaded.splits["test"].counts() == {name: 10 for name in EMOTIONS}
    train, val = loaded.splits["train"].counts(), loaded.splits["val"].counts()
    assert {c: train[c] + val[c] for c in EMOTIONS} == {**{c: 10 for c in EMOTIONS}, "happy": 11}
    assert all(v == 1 for v in val.values())
    first = np.asarray(Image.open(root / "test" / "Angry" / "0.png"))
    np.testing.assert_array_equal(loaded.splits["test"].images[0], first)
    assert any("1 image(s) were not 48x48 grayscale" in note for note in loaded.notes)


def test_image_folders_with_validation_and_in_a_zip(tmp_path: Path) -> None:
    root = image_tree(tmp_path / "faces", odd_image=False)
    (root / "train" / "sad").rename(root / "train" / "Sadness")
    (root / "validation").mkdir()
    (root / "test" / "Angry").rename(root / "validation" / "angry")
    loaded = load_data(root, cache=False)
    assert loaded.splits["val"].counts()["angry"] == 3 and len(loaded.splits["val"]) == 3
    assert loaded.splits["test"].counts()["angry"] == 0
    zipped = tmp_path / "archive.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for file in root.rglob("*.png"):
            archive.write(file, "fer/" + file.relative_to(root).as_posix())
    from_zip = load_data(zipped, cache=False)
    for split in loaded.splits:
        np.testing.assert_array_equal(from_zip.splits[split].images, loaded.splits[split].images)


@pytest.mark.parametrize(
    "form",
    [
        "archive.zip",
        "fer2013.csv",
        "fer2013.csv.gz",
        "fer2013.csv.zip",
        "icml_face_data.csv",
        "train.csv",
        "tree",
        "nested",
        "fer2013.tar.gz",
    ],
)
def test_directory_holding_each_form(tmp_path: Path, form: str) -> None:
    folder = tmp_path / "data"
    rows = make_rows()
    if form.startswith(("fer2013.csv", "icml")):
        compress = form.removeprefix("fer2013.csv") if form.startswith("fer2013") else ""
        kaggle_csv(folder, rows, name=form.removesuffix(compress), compress=compress)
    elif form == "train.csv":
        write(folder / "train.csv", csv_text(rows, columns=("emotion", "pixels")))
    elif form == "tree":
        image_tree(folder)
    elif form == "nested":
        kaggle_csv(folder / "fer2013", rows)
    elif form == "archive.zip":  # Kaggle's image-folder download, any zip name
        tree = image_tree(tmp_path / "tree")
        folder.mkdir()
        with zipfile.ZipFile(folder / form, "w") as archive:
            for file in tree.rglob("*.*g"):
                archive.write(file, file.relative_to(tree).as_posix())
    else:
        folder.mkdir()
        raw = csv_text(rows).encode()
        with tarfile.open(folder / form, "w:gz") as archive:
            info = tarfile.TarInfo("fer2013/fer2013.csv")
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    loaded = load_data(folder, cache=False)
    assert {"train", "val"} <= set(loaded.splits) and loaded.class_names == EMOTIONS
    assert resolve_data_path(folder) == folder


# --------------------------------------------------------------------------- class sets, val


def test_class_sets(tmp_path: Path) -> None:
    path = kaggle_csv(tmp_path, make_rows(2))
    dropped = load_data(path, class_set="drop-disgust", cache=False)
    assert dropped.class_names == tuple(e for e in EMOTIONS if e != "disgust")
    assert dropped.splits["train"].counts() == {name: 2 for name in dropped.class_names}
    assert set(dropped.splits["train"].labels) == set(range(6))
    merged = load_data(path, class_set="merge-disgust", cache=False)
    assert merged.class_names == dropped.class_names
    assert merged.splits["val"].counts()["angry"] == 4 and len(merged.splits["val"]) == 14
    everything = load_data(path, cache=False)
    fear = everything.splits["train"].images[everything.splits["train"].labels == 2]
    np.testing.assert_array_equal(
        merged.splits["train"].images[merged.splits["train"].labels == 1], fear
    )


def test_carved_val_is_stratified_and_deterministic(tmp_path: Path) -> None:
    write(
        tmp_path / "train.csv",
        csv_text(make_rows(20, usages=("Training",)), columns=("emotion", "pixels")),
    )
    first = load_data(tmp_path / "train.csv", seed=3, cache=False)
    again = load_data(tmp_path / "train.csv", seed=3, cache=False)
    other = load_data(tmp_path / "train.csv", seed=4, cache=False)
    assert first.splits["val"].counts() == {name: 2 for name in EMOTIONS}
    assert first.splits["train"].counts() == {name: 18 for name in EMOTIONS}
    np.testing.assert_array_equal(first.splits["val"].images, again.splits["val"].images)
    assert not np.array_equal(first.splits["val"].images, other.splits["val"].images)
    quarter = load_data(tmp_path / "train.csv", val_fraction=0.25, cache=False)
    assert quarter.splits["val"].counts() == {name: 5 for name in EMOTIONS}


def test_carved_val_keeps_every_class_on_both_sides(tmp_path: Path) -> None:
    """Classes far smaller than 1/val_fraction still get one val image and keep one in train;
    a class with a single image stays in train."""
    counts = {"angry": 80, "disgust": 2, "fear": 1, "happy": 3, "sad": 9, "surprise": 4}
    rng = np.random.default_rng(0)
    rows = [
        (EMOTIONS.index(name), rng.integers(0, 256, 2304), "Training")
        for name, n in counts.items()
        for _ in range(n)
    ]
    write(tmp_path / "train.csv", csv_text(rows, columns=("emotion", "pixels")))
    for seed in range(5):
        loaded = load_data(tmp_path / "train.csv", seed=seed, cache=False)
        train, val = loaded.splits["train"].counts(), loaded.splits["val"].counts()
        for name, n in counts.items():
            assert train[name] + val[name] == n
            if n == 1:
                assert (train[name], val[name]) == (1, 0)
            else:
                assert val[name] >= 1 and train[name] >= 1, (name, train, val)
        assert 8 <= val["angry"] <= 9


# --------------------------------------------------------------------------- cache


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = load_module.parse_source

    def counting(source: object) -> object:
        calls.append(1)
        return real(source)  # type: ignore[arg-type]

    monkeypatch.setattr(load_module, "parse_source", counting)
    return calls


def test_second_load_uses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _own_cache: Path
) -> None:
    path = kaggle_csv(tmp_path, compress=".gz")
    calls = count_parses(monkeypatch)
    first = load_data(path)
    assert len(calls) == 1 and len(list(_own_cache.glob("*.npz"))) == 1
    assert cache_dir() == _own_cache
    second = load_data(path, class_set="drop-disgust")
    third = load_data(path)
    assert len(calls) == 1
    for split in first.splits:
        np.testing.assert_array_equal(first.splits[split].images, third.splits[split].images)
        np.testing.assert_array_equal(first.splits[split].labels, third.splits[split].labels)
    assert first.notes == third.notes and len(second.class_names) == 6
    load_data(path, cache=False)
    assert len(calls) == 2


def test_cache_is_invalidated_when_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = kaggle_csv(tmp_path, make_rows(seed=0))
    calls = count_parses(monkeypatch)
    before = load_data(path)
    kaggle_csv(tmp_path, make_rows(seed=1))
    after = load_data(path)
    assert len(calls) == 2
    assert not np.array_equal(before.splits["train"].images, after.splits["train"].images)


def test_corrupt_cache_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _own_cache: Path
) -> None:
    path = kaggle_csv(tmp_path)
    first = load_data(path)
    (cached,) = _own_cache.glob("*.npz")
    cached.write_bytes(cached.read_bytes()[:200])
    calls = count_parses(monkeypatch)
    again = load_data(path)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.splits["val"].images, again.splits["val"].images)
    load_data(path)
    assert len(calls) == 1  # the rebuilt file is good
    assert not list(_own_cache.glob("*.tmp"))


def test_unwritable_cache_dir_is_skipped(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    loaded = load_data(kaggle_csv(tmp_path), cache_dir=blocker / "cache")
    assert len(loaded.splits["train"]) == 14


# --------------------------------------------------------------------------- FER+

FERPLUS_HEADER = (
    "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
)


def ferplus_pair(folder: Path) -> tuple[Path, Path]:
    """Seven Training rows (+1 PublicTest, +1 PrivateTest) and their FER+ votes."""
    votes = [  # neutral happiness surprise sadness anger disgust fear contempt unknown NF
        ("fer0.png", "0,8,1,0,0,0,0,0,1,0"),  # happy
        ("fer1.png", "0,0,0,0,6,4,0,0,0,0"),  # angry; soft 0.6 angry 0.4 disgust
        ("", "0,0,0,0,0,0,0,0,0,10"),  # no image name: dropped
        ("fer3.png", "2,0,0,0,0,0,0,0,5,3"),  # unknown majority: dropped
        ("fer4.png", "3,0,0,0,0,0,0,6,1,0"),  # contempt majority: dropped in majority
        ("fer5.png", "4,4,0,0,0,0,0,0,2,0"),  # tie: majority drops; soft says happy
        ("fer6.png", "0,0,3,0,0,0,7,0,0,0"),  # fear
    ]
    rows = [(0, np.full(2304, k), "Training") for k in range(7)]
    rows += [(6, np.full(2304, 7), "PublicTest"), (6, np.full(2304, 8), "PrivateTest")]
    lines = [FERPLUS_HEADER] + [f"Training,{name},{v}" for name, v in votes]
    lines += [
        "PublicTest,fer7.png,10,0,0,0,0,0,0,0,0,0",
        "PrivateTest,fer8.png,9,0,0,1,0,0,0,0,0,0",
    ]
    return kaggle_csv(folder, rows), write(folder / "fer2013new.csv", "\n".join(lines) + "\n")


def test_ferplus_majority(tmp_path: Path) -> None:
    csv, ferplus = ferplus_pair(tmp_path)
    loaded = load_data(csv, ferplus=ferplus, cache=False)
    train = loaded.splits["train"]
    assert [EMOTIONS[i] for i in train.labels] == ["happy", "angry", "fear"]
    np.testing.assert_array_equal(train.images[:, 0, 0], [0, 1, 6])
    assert loaded.splits["test"].labels.tolist() == [6]
    note = next(n for n in loaded.notes if n.startswith("FER+ majority"))
    assert "1 unnamed, 1 unknown/NF, 1 contempt, 1 ties" in note


def test_ferplus_soft(tmp_path: Path) -> None:
    csv, ferplus = ferplus_pair(tmp_path)
    loaded = load_data(csv, ferplus=ferplus, ferplus_mode="soft", cache=False)
    train = loaded.splits["train"]
    np.testing.assert_array_equal(train.images[:, 0, 0], [0, 1, 4, 5, 6])
    assert train.soft_labels is not None and train.soft_labels.dtype == np.float32
    np.testing.assert_allclose(train.soft_labels.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(train.soft_labels[1], [0.6, 0.4, 0, 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(train.soft_labels[2], [0, 0, 0, 0, 0, 0, 1])  # contempt dropped
    assert [EMOTIONS[i] for i in train.labels] == ["happy", "angry", "neutral", "happy", "fear"]
    merged = load_data(
        csv, ferplus=ferplus, ferplus_mode="soft", class_set="merge-disgust", cache=False
    )
    np.testing.assert_allclose(merged.splits["train"].soft_labels[1], [1, 0, 0, 0, 0, 0])


def test_ferplus_row_count_mismatch(tmp_path: Path) -> None:
    csv, ferplus = ferplus_pair(tmp_path)
    ferplus.write_text("\n".join(ferplus.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(UserError) as excinfo:
        load_data(csv, ferplus=ferplus, cache=False)
    one_line_error(excinfo, "fer2013new.csv", "8 data rows", "9")


def test_ferplus_misaligned_or_missing(tmp_path: Path) -> None:
    csv, ferplus = ferplus_pair(tmp_path)
    lines = ferplus.read_text().splitlines()
    ferplus.write_text("\n".join([lines[0], lines[-1], *lines[1:-1]]) + "\n")
    with pytest.raises(UserError) as excinfo:
        load_data(csv, ferplus=ferplus, cache=False)
    one_line_error(excinfo, "fer2013new.csv line 2", "'PrivateTest'", "not aligned")
    with pytest.raises(UserError) as excinfo:
        load_data(csv, ferplus=tmp_path / "missing.csv", cache=False)
    one_line_error(excinfo, "missing.csv", "does not exist")


def test_ferplus_needs_the_kaggle_csv(tmp_path: Path) -> None:
    _, ferplus = ferplus_pair(tmp_path)
    with pytest.raises(UserError) as excinfo:
        load_data(image_tree(tmp_path / "tree"), ferplus=ferplus, cache=False)
    one_line_error(excinfo, "FER+", "tree")


# --------------------------------------------------------------------------- load_args


def test_load_args_reload_the_same_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "train.csv", csv_text(make_rows(5, ("Training",)), ("emotion", "pixels")))
    loaded = load_data("train.csv", class_set="merge-disgust", val_fraction=0.2, seed=7)
    assert loaded.load_args == {
        "path": str(tmp_path / "train.csv"),
        "class_set": "merge-disgust",
        "ferplus": None,
        "ferplus_mode": "majority",
        "val_fraction": 0.2,
        "seed": 7,
        "cache": True,
        "cache_dir": None,
        "demo_size": 1,
    }
    assert json.loads(json.dumps(loaded.load_args)) == loaded.load_args
    monkeypatch.chdir(tmp_path.parent)  # a resumed search may start elsewhere
    again = load_data(**loaded.load_args)
    assert again.load_args == loaded.load_args and again.class_names == loaded.class_names
    for name, split in loaded.splits.items():
        np.testing.assert_array_equal(again.splits[name].images, split.images)
        np.testing.assert_array_equal(again.splits[name].labels, split.labels)


def test_load_args_of_demo_and_ferplus(tmp_path: Path) -> None:
    demo = load_data("demo", demo_size=0.1, seed=2, cache=False)
    assert demo.load_args["path"] == "demo" and demo.load_args["demo_size"] == 0.1
    made = make_demo(0.1, seed=2)
    for data in (load_data(**demo.load_args), load_data(**made.load_args)):
        np.testing.assert_array_equal(data.splits["val"].images, demo.splits["val"].images)
    csv, ferplus = ferplus_pair(tmp_path)
    relabelled = load_data(csv, ferplus=ferplus, ferplus_mode="soft", cache=False)
    assert relabelled.load_args["ferplus"] == str(ferplus)
    assert relabelled.load_args["ferplus_mode"] == "soft"


# --------------------------------------------------------------------------- demo


def test_demo_is_deterministic_balanced_and_shaped() -> None:
    demo = make_demo()
    assert demo.source == "demo" and demo.class_names == EMOTIONS
    sizes = {"train": 300, "val": 50, "test": 50}
    for name, split in demo.splits.items():
        assert split.images.shape == (7 * sizes[name], 48, 48) and split.images.dtype == np.uint8
        assert split.labels.dtype == np.int64
        assert split.counts() == {c: sizes[name] for c in EMOTIONS}
        assert split.images.std() > 20  # not blank
    again, other = make_demo(), make_demo(seed=1)
    np.testing.assert_array_equal(demo.splits["train"].images, again.splits["train"].images)
    np.testing.assert_array_equal(demo.splits["test"].labels, again.splits["test"].labels)
    assert not np.array_equal(demo.splits["train"].images, other.splits["train"].images)
    assert not np.array_equal(demo.splits["val"].images, demo.splits["test"].images)


def test_demo_size_and_class_sets() -> None:
    small = make_demo(size=0.1)
    assert small.splits["train"].counts() == {c: 30 for c in EMOTIONS}
    assert len(make_demo(size=2).splits["val"]) == 700
    dropped = make_demo(size=0.1, class_set="drop-disgust")
    assert dropped.splits["train"].counts() == {c: 30 for c in dropped.class_names}
    merged = load_data("demo", demo_size=0.1, class_set="merge-disgust")
    assert merged.splits["train"].counts()["angry"] == 60


def test_demo_classes_differ_on_average() -> None:
    train = make_demo(size=0.5).splits["train"]
    means = np.stack([train.images[train.labels == c].mean(0) for c in range(7)])
    gaps = [np.abs(means[a] - means[b]).mean() for a in range(7) for b in range(a + 1, 7)]
    assert min(gaps) > 0.5


# --------------------------------------------------------------------------- default path


def test_resolve_data_path_defaults_to_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_data_path(None) == "demo" and resolve_data_path("demo") == "demo"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "readme.txt").write_text("nothing here")
    loaded = load_data(demo_size=0.1)
    assert loaded.source == "demo"
    assert "--data path/to/fer2013.csv" in loaded.notes[0]
    kaggle_csv(tmp_path / "data", compress=".gz")
    assert resolve_data_path(None) == tmp_path / "data"
    assert load_data(cache=False).source == str(tmp_path / "data" / "fer2013.csv.gz")


def test_summaries(tmp_path: Path) -> None:
    loaded = load_data(kaggle_csv(tmp_path), cache=False)
    summary = summarize(loaded)
    assert summary["image_shape"] == [48, 48] and summary["class_names"] == list(EMOTIONS)
    assert summary["splits"]["val"]["fear"] == 2 and summary["source"] == loaded.source
    table = format_summary(loaded)
    assert "train" in table and "surprise" in table and "48x48" in table
    assert isinstance(loaded, FERData)


# --------------------------------------------------------------------------- bad input


def bad_pixels(row: int, text: str) -> str:
    """A small csv whose file line ``row + 1`` has ``text`` as its pixels."""
    lines = csv_text(make_rows(1)).splitlines()
    label, _, usage = lines[row].split(",")
    lines[row] = f"{label},{text},{usage}"
    return "\n".join(lines) + "\n"


GOOD = " ".join(["7"] * 2303)
BAD_CSVS = {
    "short row": (bad_pixels(3, " ".join(["1"] * 2303)), ["line 4", "2303 values", "2304"]),
    "non-integer": (bad_pixels(2, GOOD + " abc"), ["line 3", "'abc'"]),
    "float": (bad_pixels(2, GOOD + " 1.5"), ["'1.5'"]),
    "256": (bad_pixels(4, "256 " + GOOD), ["line 5", "'256'", "0..255"]),
    "huge": (bad_pixels(4, GOOD + " 65601"), ["'65601'"]),
    "negative": (bad_pixels(4, GOOD + " -1"), ["'-1'"]),
    "label 7": (csv_text(make_rows(1)).replace("\n6,", "\n7,", 1), ["line 8", "'7'", "0..6"]),
    "label x": (csv_text(make_rows(1)).replace("\n2,", "\nx,", 1), ["line 4", "'x'"]),
    "usage": (
        csv_text(make_rows(1)).replace("PublicTest", "Validation", 1),
        ["line 9", "'Validation'", "PublicTest"],
    ),
    "no PrivateTest": (csv_text(make_rows(1, usages=USAGES[:2])), ["PrivateTest", "test split"]),
    "columns": (
        csv_text(make_rows(1)).replace("emotion,pixels", "label,pixels", 1),
        ["emotion", "found columns: label, pixels, usage"],
    ),
    "fields": (csv_text(make_rows(1)).replace(",Training", ",Training,x", 1), ["line 2", "3"]),
    "header only": ("emotion,pixels,Usage\n", ["no data rows"]),
    "blank line": (csv_text(make_rows(1)).replace("\n", "\n\n", 3), ["line 2", "blank"]),
    "empty": ("", ["empty"]),
    "binary": (b"\x00\xff\xfe" * 50, ["not a CSV"]),
}


@pytest.mark.parametrize("case", list(BAD_CSVS))
def test_bad_csv_is_a_one_line_user_error(tmp_path: Path, case: str) -> None:
    text, needles = BAD_CSVS[case]
    path = write(tmp_path / "fer2013.csv", text)
    with pytest.raises(UserError) as excinfo:
        load_data(path, cache=False)
    one_line_error(excinfo, "fer2013.csv", *needles)


def test_bad_files_are_one_line_user_errors(tmp_path: Path) -> None:
    good = gzip.compress(csv_text(make_rows(1)).encode())
    cases = {
        "missing": (tmp_path / "nope.csv", ["nope.csv", "does not exist", "--data"]),
        "truncated.csv.gz": (
            write(tmp_path / "truncated.csv.gz", good[: len(good) // 2]),
            ["truncated.csv.gz", "truncated or corrupt"],
        ),
        "lying.csv.gz": (
            write(tmp_path / "lying.csv.gz", "emotion,pixels,Usage\n"),
            ["lying.csv.gz", "not gzip data"],
        ),
        "empty.csv.gz": (write(tmp_path / "empty.csv.gz", gzip.compress(b"")), ["empty"]),
        "empty folder": (tmp_path / "nothing", ["nothing", "no FER2013", "fer2013.csv", "train/"]),
    }
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("x")
    zipped = kaggle_csv(tmp_path / "z", compress=".zip")
    write(zipped, zipped.read_bytes()[:-100])
    cases["truncated zip"] = (zipped, ["fer2013.csv.zip", "zip"])
    for path, needles in cases.values():
        with pytest.raises(UserError) as excinfo:
            load_data(path, cache=False)
        one_line_error(excinfo, *needles)


def test_unknown_class_folder(tmp_path: Path) -> None:
    root = image_tree(tmp_path / "faces", odd_image=False)
    (root / "train" / "Angry").rename(root / "train" / "angyr")
    with pytest.raises(UserError) as excinfo:
        load_data(root, cache=False)
    one_line_error(excinfo, "'train/angyr'", "did you mean 'angry'")


def test_unreadable_image(tmp_path: Path) -> None:
    root = image_tree(tmp_path / "faces", odd_image=False)
    (root / "test" / "sad" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError) as excinfo:
        load_data(root, cache=False)
    one_line_error(excinfo, "broken.png")


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("class_set", "drop_disgust", "did you mean 'drop-disgust'"),
        ("ferplus_mode", "majorty", "did you mean 'majority'"),
        ("val_fraction", 1.5, "1.5"),
        ("seed", -1, "-1"),
    ],
)
def test_bad_options(option: str, value: object, needle: str) -> None:
    with pytest.raises(UserError) as excinfo:
        load_data("demo", **{option: value})  # type: ignore[arg-type]
    one_line_error(excinfo, str(value), needle)


# --------------------------------------------------------------------------- the real file


@pytest.mark.skipif(not REAL_CSV.exists(), reason="shared FER2013 file not present")
def test_real_fer2013_counts() -> None:
    loaded = load_data(REAL_CSV)
    expected = {
        "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
        "val": [467, 56, 496, 895, 653, 415, 607],
        "test": [491, 55, 528, 879, 594, 416, 626],
    }
    sizes = {"train": 28709, "val": 3589, "test": 3589}
    assert {name: len(split) for name, split in loaded.splits.items()} == sizes
    for name, counts in expected.items():
        assert loaded.splits[name].counts() == dict(zip(EMOTIONS, counts, strict=True))
    if REAL_FERPLUS.exists():  # aligned row by row; reuses the cache written above
        relabelled = load_data(REAL_CSV, ferplus=REAL_FERPLUS)
        assert 30000 < sum(len(split) for split in relabelled.splits.values()) < 35887
