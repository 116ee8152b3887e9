"""The compact image-file store: list parsing, path tables, key joins, decoding and its errors."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from support.image_fixtures import band_image, write_jpeg, write_truncated_jpeg

from lt_noise.data.files import ImageFiles, ImageReadError, PathTable, join_labels, read_path_list


def _reference_parse(text: str):
    """Independent reference: Python string splitting, line by line."""
    paths, labels = [], []
    for line in text.splitlines():
        if line.strip():
            path, label = line.strip().rsplit(None, 1)
            paths.append(path.strip())
            labels.append(int(label))
    return paths, labels


def test_read_path_list_matches_a_python_reference(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(500):
        path = f"dir {i % 7}/img_{i}.jpg" if i % 5 == 0 else f"google/q{i % 13:04d}/{i:06d}.JPEG"
        sep = ["  ", "\t", " "][i % 3]
        end = "\r\n" if i % 11 == 0 else "\n"
        lines.append(f"{' ' if i % 17 == 0 else ''}{path}{sep}{rng.integers(0, 10**int(rng.integers(1, 6)))}  {end}")
        if i % 50 == 0:
            lines.append("\n")
    text = "".join(lines)
    (tmp_path / "list.txt").write_text(text, newline="")
    table, labels = read_path_list(tmp_path / "list.txt")
    ref_paths, ref_labels = _reference_parse(text)
    assert [table[i] for i in range(len(table))] == ref_paths
    np.testing.assert_array_equal(labels, ref_labels)


def test_last_line_without_newline_and_bom_and_path_only_lists(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfa.jpg 3\nb/c.jpg 12")
    table, labels = read_path_list(tmp_path / "a.txt")
    assert [table[0], table[1]] == ["a.jpg", "b/c.jpg"] and labels.tolist() == [3, 12]
    (tmp_path / "keys.txt").write_text("images/0/00/a.jpg\n\nimages/1/01/b c.jpg\n")
    keys, none = read_path_list(tmp_path / "keys.txt", labels=False)
    assert none is None and [keys[0], keys[1]] == ["images/0/00/a.jpg", "images/1/01/b c.jpg"]
    (tmp_path / "empty.txt").write_text("\n \n")
    assert len(read_path_list(tmp_path / "empty.txt")[0]) == 0


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"a.jpg 1\nb.jpg 2\nc.jp", r"line 3 .*'c.jp'.*truncated"),
        (b"a.jpg 1\nb.jpg two\n", r"integer label on line 2 .*'two'"),
        (b"a.jpg -1\n", r"integer label on line 1"),
        (b"a.jpg 1234567890123456789012\n", r"integer label on line 1"),
    ],
)
def test_malformed_lines_are_named(tmp_path, content, match):
    (tmp_path / "bad.txt").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_path_list(tmp_path / "bad.txt")


def test_path_table_take_compacts_small_selections_and_keeps_the_paths():
    strings = [f"folder/{i:05d}/image name {i}.jpg" for i in range(2000)]
    table = PathTable.from_strings(strings)
    few = table.take(np.array([1999, 3, 17]))
    assert [few[i] for i in range(3)] == [strings[1999], strings[3], strings[17]]
    assert few.buffer.nbytes < table.buffer.nbytes / 10, "a small selection must not keep the whole buffer"
    many = table.take(np.arange(0, 2000, 1))
    assert many.buffer is table.buffer and many[1234] == strings[1234]
    assert table.startswith("folder/0001").sum() == sum(s.startswith("folder/0001") for s in strings)
    stripped = table.strip_prefix("folder/")
    assert stripped[42] == strings[42][len("folder/"):]
    with pytest.raises(ValueError, match="start with"):
        table.strip_prefix("other/")
    np.testing.assert_array_equal(table.fixed_width(), np.array([s.encode() for s in strings]))
    slashed = PathTable.from_strings(["/a/b.jpg", "c.jpg", "/"]).without_leading_slash()
    assert [slashed[0], slashed[1], slashed[2]] == ["a/b.jpg", "c.jpg", ""]


def test_join_labels_matches_a_dictionary_lookup():
    rng = np.random.default_rng(1)
    names = [f"images/{i % 10}/{i % 100:02d}/{rng.integers(1 << 40):x}.jpg" for i in range(3000)]
    labels = rng.integers(0, 14, size=len(names))
    lookup = dict(zip(names, labels.tolist()))
    wanted = [names[i] for i in rng.permutation(len(names))[:700]]
    joined = join_labels(PathTable.from_strings(wanted), PathTable.from_strings(names), labels, source="kv.txt")
    assert joined.tolist() == [lookup[w] for w in wanted]
    with pytest.raises(ValueError, match=r"kv.txt.*'images/x.jpg' has none"):
        keys = PathTable.from_strings([wanted[0], "images/x.jpg"])
        join_labels(keys, PathTable.from_strings(names), labels, source="kv.txt")
    # a key longer than every table key, sharing its prefix, is not a match
    with pytest.raises(ValueError, match="has none"):
        join_labels(PathTable.from_strings([names[0] + "x"]), PathTable.from_strings(names), labels, source="kv.txt")


def test_image_files_decode_rgb_and_name_missing_or_truncated_files(tmp_path):
    rng = np.random.default_rng(0)
    original = band_image(1, 4, 16, rng)
    write_jpeg(tmp_path / "a.jpg", original)
    Image.fromarray(original[..., 0]).save(tmp_path / "grey.png")
    write_truncated_jpeg(tmp_path / "cut.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    files = ImageFiles(tmp_path, PathTable.from_strings(["a.jpg", "grey.png", "missing.jpg", "cut.jpg", "text.jpg"]),
                       name="Fixture", layout="  <root>/*.jpg", source="nowhere")
    decoded = files[0]
    assert decoded.shape == (16, 16, 3) and decoded.dtype == np.uint8 and decoded.flags.writeable
    with Image.open(tmp_path / "a.jpg") as direct:
        np.testing.assert_array_equal(decoded, np.asarray(direct.convert("RGB")))
    rows = decoded.mean(axis=(1, 2))
    assert rows[4:8].mean() > 180 > 100 > rows[10:].mean(), "the class band (rows 4-7) survives JPEG"
    grey = files[1]
    assert grey.shape == (16, 16, 3) and np.array_equal(grey[..., 1], original[..., 0])
    for index, problem in ((2, "does not exist"), (3, "OSError"), (4, "UnidentifiedImageError")):
        with pytest.raises(ImageReadError, match=problem) as info:
            files[index]
        assert str(tmp_path / files.paths[index]) in str(info.value) and "<root>/*.jpg" in str(info.value)
    assert files.first_missing([0, 1]) is None and files.first_missing([0, 2]) == tmp_path / "missing.jpg"


def test_image_files_pickle_and_errors_cross_worker_processes(tmp_path):
    write_jpeg(tmp_path / "a.jpg", band_image(0, 2, 8, np.random.default_rng(0)))
    files = ImageFiles(tmp_path, PathTable.from_strings(["a.jpg", "gone.jpg"]), name="Fixture", layout="L", source="S")
    clone = pickle.loads(pickle.dumps(files))
    assert np.array_equal(clone[0], files[0])

    class Decode(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.from_numpy(files[i])

    loader = torch.utils.data.DataLoader(Decode(), batch_size=1, num_workers=1)
    with pytest.raises(ImageReadError, match=r"gone.jpg: the file does not exist"):
        list(loader)
