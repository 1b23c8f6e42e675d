"""Tests of the point-cloud readers: formats, layouts, splits, bad inputs, degenerate and huge
clouds, fixed-size samples, normalisation, raw features, and the DALES objects bundle."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import logged, single_thread  # noqa: F401  (autouse fixture)
from plyfile import PlyData, PlyElement

from polyjepa.errors import ConfigError, DataError
from polyjepa.modalities.pointcloud import load_data, load_file, raw_features
from polyjepa.modalities.pointcloud.readers import (
    EXTENSIONS,
    Cloud,
    PointCloudDataConfig,
    PointClouds,
    fit_count,
    normalize,
    read_bundle,
    read_cloud,
)

HALF = 1.5  # half the side of the test cube
CUBE_VERTS = HALF * np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
                              [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=np.float64)
CUBE_QUADS = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]]


def cfg(path: Path | str = "unused", **overrides) -> PointCloudDataConfig:
    """A data section on `path`; samples of 32 points so 40-point test clouds are not resampled."""
    overrides.setdefault("num_points", 32)
    return PointCloudDataConfig(path=str(path), **overrides)


def cloud(n: int = 40, seed: int = 0, channels: int = 3) -> np.ndarray:
    """`[n, channels]` float32 points with distinct rows (exact in text with 6 decimals)."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(size=(n, channels)), 6).astype(np.float32)


def write_rows(path: Path, points: np.ndarray, sep: str = " ", head: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(sep.join(f"{v:.6f}" for v in row) for row in points)
    path.write_text(head + rows + "\n")
    return path


def write_npy(path: Path, points: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, points)
    return path


def write_ply(path: Path, points: np.ndarray, names=("x", "y", "z", "intensity"), text=True,
              faces: list[list[int]] | None = None) -> Path:
    vertex = np.empty(len(points), dtype=[(n, "f4") for n in names])
    for i, n in enumerate(names):
        vertex[n] = points[:, i]
    elements = [PlyElement.describe(vertex, "vertex")]
    if faces is not None:
        face = np.empty(len(faces), dtype=[("vertex_indices", "O")])
        face["vertex_indices"] = [np.asarray(f, dtype=np.int32) for f in faces]
        elements.append(PlyElement.describe(face, "face"))
    PlyData(elements, text=text, byte_order="<").write(str(path))
    return path


def off_text(verts: np.ndarray, faces: list[list[int]], glitch: bool = False) -> str:
    counts = f"{len(verts)} {len(faces)} 0\n"
    head = f"OFF{counts}" if glitch else f"OFF\n# a comment\n{counts}"
    body = "".join(" ".join(f"{v:g}" for v in row) + "\n" for row in verts)
    return head + body + "".join(f"{len(f)} {' '.join(map(str, f))}\n" for f in faces)


def class_folder(root: Path, classes=("a", "b", "c"), per_class: int = 4, n: int = 40,
                 ext: str = ".xyz") -> dict[str, np.ndarray]:
    """`root/<class>/<i><ext>`, each a distinct cloud; returns {path: points}."""
    written = {}
    for k, name in enumerate(classes):
        for i in range(per_class):
            points = cloud(n, seed=100 * k + i)
            path = root / name / f"{i}{ext}"
            (write_npy if ext == ".npy" else write_rows)(path, points)
            written[str(path)] = points
    return written


def bad(path: Path, conf: PointCloudDataConfig | None = None) -> str:
    """read_cloud's DataError message for `path`, checked to name the file."""
    with pytest.raises(DataError) as info:
        read_cloud(path, conf or cfg(path))
    assert str(path) in str(info.value)
    return str(info.value)


def check_labels(ds: PointClouds, class_names: list[str], label_of) -> None:
    for source, label in zip(ds.sources, ds.labels.tolist(), strict=True):
        assert class_names[label] == label_of(source)


# --- text formats ------------------------------------------------------------------------------


def test_xyz_whitespace_rows_read_as_float32(tmp_path):
    points = cloud(40, seed=1)
    path = write_rows(tmp_path / "a.xyz", points, sep=" \t ")
    out = read_cloud(path, cfg(path))
    assert out.dtype == np.float32 and out.shape == (40, 3)
    np.testing.assert_array_equal(out, points)


def test_txt_comma_separated_rows(tmp_path):
    points = cloud(40, seed=2)
    path = write_rows(tmp_path / "a.txt", points, sep=",")
    np.testing.assert_array_equal(read_cloud(path, cfg(path)), points)
    spaced = write_rows(tmp_path / "b.TXT", points, sep=", ")  # upper-case suffix too
    np.testing.assert_array_equal(read_cloud(spaced, cfg(spaced)), points)


def test_pts_skips_point_count_line_and_comment_lines(tmp_path):
    points = cloud(40, seed=3)
    path = write_rows(tmp_path / "a.pts", points, head="# scanner export\n// units: m\n\n40\n")
    out = read_cloud(path, cfg(path))
    assert out.shape == (40, 3)  # the count line is not read as a point
    np.testing.assert_array_equal(out, points)


def test_columns_select_extra_columns(tmp_path):
    points = cloud(40, seed=4, channels=5)  # x y z intensity class
    path = write_rows(tmp_path / "a.xyz", points)
    np.testing.assert_array_equal(read_cloud(path, cfg(path)), points[:, :3])
    np.testing.assert_array_equal(read_cloud(path, cfg(path, columns=[0, 1, 2])), points[:, :3])
    keep = read_cloud(path, cfg(path, columns=[0, 1, 2, 3]))
    assert keep.shape == (40, 4)
    np.testing.assert_array_equal(keep, points[:, :4])
    np.testing.assert_array_equal(read_cloud(path, cfg(path, columns=[1, 0, 2, 4])),
                                  points[:, [1, 0, 2, 4]])
    assert "column 7" in bad(path, cfg(path, columns=[0, 1, 2, 7]))
    with pytest.raises(ConfigError, match="at least the 3"):
        read_cloud(path, cfg(path, columns=[0, 1]))
    with pytest.raises(ConfigError, match="column indices"):
        read_cloud(path, cfg(path, columns=["x", "y", "z"]))


# --- PLY ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [True, False], ids=["ascii", "binary_little_endian"])
def test_ply_vertices_with_extra_property_by_name(tmp_path, text):
    points = cloud(40, seed=5, channels=4)
    path = write_ply(tmp_path / "a.ply", points, text=text, faces=[[0, 1, 2], [1, 2, 3]])
    header = path.read_bytes()[:200]
    assert (b"format ascii" if text else b"format binary_little_endian") in header
    xyz = read_cloud(path, cfg(path))
    assert xyz.shape == (40, 3) and xyz.dtype == np.float32  # faces ignored: the vertices
    np.testing.assert_array_equal(xyz, points[:, :3])
    full = read_cloud(path, cfg(path, columns=["x", "y", "z", "intensity"]))
    np.testing.assert_array_equal(full, points)
    np.testing.assert_array_equal(read_cloud(path, cfg(path, columns=["y", "x", "z"])),
                                  points[:, [1, 0, 2]])
    with pytest.raises(ConfigError, match="property names"):
        read_cloud(path, cfg(path, columns=[0, 1, 2, 3]))


def test_binary_ply_without_x_property_is_named(tmp_path):
    path = write_ply(tmp_path / "px.ply", cloud(40, seed=6), names=("px", "py", "pz"), text=False)
    message = bad(path)
    assert "no property 'x'" in message and "px, py, pz" in message
    assert "'intensity'" in bad(write_ply(tmp_path / "b.ply", cloud(40), names=("x", "y", "z")),
                                cfg(columns=["x", "y", "z", "intensity"]))


def test_corrupt_ply_is_named(tmp_path):
    path = tmp_path / "junk.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 40\n"
                     b"property float x\nproperty float y\nproperty float z\nend_header\n" + bytes(20))
    assert "cannot read PLY" in bad(path)


# --- OFF ---------------------------------------------------------------------------------------


def test_off_cube_vertices_with_mesh_points_zero(tmp_path):
    path = tmp_path / "cube.off"
    path.write_text(off_text(CUBE_VERTS, CUBE_QUADS))
    out = read_cloud(path, cfg(path, mesh_points=0, min_points=8))
    assert out.shape == (8, 3)
    np.testing.assert_array_equal(out, CUBE_VERTS)


def test_off_surface_sampling_lies_on_the_cube_and_is_deterministic(tmp_path):
    path = tmp_path / "cube.off"
    path.write_text(off_text(CUBE_VERTS, CUBE_QUADS))
    conf = cfg(path, mesh_points=1200)
    out = read_cloud(path, conf)
    assert out.shape == (1200, 3)
    linf = np.abs(out.astype(np.float64)).max(axis=1)
    np.testing.assert_allclose(linf, HALF, atol=1e-6)  # every point on a face, none inside
    # area-weighted: six equal faces get about 200 points each
    face = np.argmax(np.abs(out), axis=1) * 2 + (out[np.arange(1200), np.argmax(np.abs(out), 1)] > 0)
    counts = np.bincount(face, minlength=6)
    assert counts.min() > 120 and counts.max() < 280, counts
    assert len(np.unique(out, axis=0)) == 1200  # a sample of the surface, not repeated vertices
    np.testing.assert_array_equal(read_cloud(path, conf), out)  # same file, same sample
    other = tmp_path / "cube2.off"  # seeded by the file name
    other.write_text(path.read_text())
    assert not np.array_equal(read_cloud(other, conf), out)


def test_off_modelnet_glitched_header(tmp_path):
    tris = [t for a, b, c, d in CUBE_QUADS for t in ([a, b, c], [a, c, d])]
    path = tmp_path / "glitch.off"
    path.write_text(off_text(CUBE_VERTS, tris, glitch=True))
    assert path.read_text().splitlines()[0] == "OFF8 12 0"
    np.testing.assert_array_equal(read_cloud(path, cfg(path, mesh_points=0, min_points=8)),
                                  CUBE_VERTS)
    sampled = read_cloud(path, cfg(path, mesh_points=500))
    assert sampled.shape == (500, 3)
    np.testing.assert_allclose(np.abs(sampled.astype(np.float64)).max(axis=1), HALF, atol=1e-6)


def test_off_faces_beyond_the_vertices_are_named(tmp_path):
    path = tmp_path / "broken.off"
    path.write_text(off_text(CUBE_VERTS, [[0, 1, 9]]))
    assert "vertices that do not exist" in bad(path, cfg(mesh_points=100))
    path.write_text("OFF\n12 0 0\n0 0 0\n1 1 1\n")
    assert "says 12 vertices" in bad(path, cfg(min_points=1))
    path.write_text("PLY\n8 0 0\n")
    assert "not an OFF file" in bad(path)


# --- npy and npz -------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 4])
def test_npy_clouds(tmp_path, channels):
    points = cloud(50, seed=7, channels=channels)
    path = write_npy(tmp_path / "a.npy", points.astype(np.float64))
    out = read_cloud(path, cfg(path))
    assert out.dtype == np.float32 and out.shape == (50, 3)
    np.testing.assert_array_equal(out, points[:, :3])
    if channels == 4:
        np.testing.assert_array_equal(read_cloud(path, cfg(path, columns=[0, 1, 2, 3])), points)
    else:
        assert "data.columns" in bad(path, cfg(path, columns=[0, 1, 2, 3]))


def test_npy_of_wrong_shape_is_named(tmp_path):
    assert "shape [40, 3, 1]" in bad(write_npy(tmp_path / "a.npy", np.zeros((40, 3, 1))))
    assert "2 columns" in bad(write_npy(tmp_path / "b.npy", np.zeros((40, 2))))


def bundle_arrays(sizes=(40, 50, 60, 45), labels=(1, 0, 1, 0), channels: int = 3):
    points = np.concatenate([cloud(n, seed=10 + i, channels=channels) for i, n in enumerate(sizes)])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return points, starts, np.asarray(labels), np.cumsum(np.concatenate([[0], sizes]))


@pytest.mark.parametrize("bounds", [False, True], ids=["starts", "starts_and_end"])
def test_npz_bundle_offsets_labels_class_names_ids(tmp_path, bounds):
    points, starts, labels, ends = bundle_arrays(channels=4)
    path = tmp_path / "b.npz"
    np.savez(path, points=points, offsets=ends if bounds else starts, labels=labels,
             class_names=np.array(["tree", "car"]), ids=np.array([11, 12, 13, 14]))
    clouds, names = read_bundle(path, cfg(path))
    assert names == ["tree", "car"]
    assert [c.label for c in clouds] == ["car", "tree", "car", "tree"]
    assert [c.groups for c in clouds] == [{"id": str(i)} for i in (11, 12, 13, 14)]
    assert [c.source for c in clouds] == [f"{path}[id {i}]" for i in (11, 12, 13, 14)]
    for k, c in enumerate(clouds):
        assert c.points.dtype == np.float32
        np.testing.assert_array_equal(c.points, points[ends[k]:ends[k + 1], :3])
    wide, _ = read_bundle(path, cfg(path, columns=[0, 1, 2, 3]))
    np.testing.assert_array_equal(wide[2].points, points[ends[2]:ends[3]])


def test_npz_bundle_without_class_names_or_ids(tmp_path):
    points, starts, _, ends = bundle_arrays()
    path = tmp_path / "b.npz"
    np.savez(path, points=points, offsets=starts, labels=np.array(["oak", "elm", "oak", "elm"]))
    clouds, names = read_bundle(path, cfg(path))
    assert names is None
    assert [c.label for c in clouds] == ["oak", "elm", "oak", "elm"]
    assert [c.groups["id"] for c in clouds] == ["0", "1", "2", "3"]
    assert [len(c.points) for c in clouds] == [40, 50, 60, 45]


# --- layouts through load_data -----------------------------------------------------------------


def test_folder_per_class(tmp_path):
    written = class_folder(tmp_path / "data", per_class=4)
    train, test, meta = load_data(cfg(tmp_path / "data"), None)
    assert meta["class_names"] == ["a", "b", "c"] and meta["num_classes"] == 3
    assert meta["num_points"] == 32 and meta["in_channels"] == 3
    assert (len(train), len(test)) == (9, 3)
    assert sorted(train.sources + test.sources) == sorted(written)
    for ds in (train, test):
        check_labels(ds, meta["class_names"], lambda s: Path(s).parent.name)
        for source, points in zip(ds.sources, ds.clouds, strict=True):
            np.testing.assert_array_equal(points.numpy(), written[source])
    assert sorted(meta["class_names"][i] for i in test.labels.tolist()) == ["a", "b", "c"]


def test_manifest_with_split_column(tmp_path):
    for name, seed in (("p.xyz", 1), ("q.npy", 2), ("r.ply", 3), ("s.txt", 4)):
        points = cloud(40, seed=seed)
        path = tmp_path / "clouds" / name
        if name.endswith(".npy"):
            write_npy(path, points)
        elif name.endswith(".ply"):
            write_ply(path, points, names=("x", "y", "z"))
        else:
            write_rows(path, points, sep="," if name.endswith(".txt") else " ")
    manifest = tmp_path / "clouds" / "list.csv"
    manifest.write_text("path,label,split\np.xyz,chair,train\nq.npy,table,train\n"
                        "r.ply,chair,test\ns.txt,table,TEST\n")
    train, test, meta = load_data(cfg(manifest), None)
    assert [Path(s).name for s in train.sources] == ["p.xyz", "q.npy"]
    assert [Path(s).name for s in test.sources] == ["r.ply", "s.txt"]
    assert meta["class_names"] == ["chair", "table"]
    assert train.labels.tolist() == [0, 1] and test.labels.tolist() == [0, 1]
    np.testing.assert_array_equal(test.clouds[0].numpy(), cloud(40, seed=3))


def test_label_regex_layout_and_test_groups(tmp_path):
    regex = r"^(?P<label>[a-z]+)_(?P<index>\d+)\.xyz$"
    for label in ("chair", "lamp"):
        for i in range(5):
            write_rows(tmp_path / f"{label}_{i}.xyz", cloud(40, seed=i))
    train, test, meta = load_data(cfg(tmp_path, label_regex=regex, test_fraction=0.4), None)
    assert meta["class_names"] == ["chair", "lamp"] and (len(train), len(test)) == (6, 4)
    for ds in (train, test):
        check_labels(ds, meta["class_names"], lambda s: Path(s).name.split("_")[0])
    train, test, _ = load_data(cfg(tmp_path, label_regex=regex, test_groups={"index": [0, 4]}),
                               None)
    assert sorted(Path(s).name for s in test.sources) == [
        "chair_0.xyz", "chair_4.xyz", "lamp_0.xyz", "lamp_4.xyz"]
    assert len(train) == 6


def test_bundle_path_through_load_data(tmp_path):
    sizes = [40 + i for i in range(10)]
    labels = [0, 1] * 5
    points, starts, labels, ends = bundle_arrays(sizes, labels)
    path = tmp_path / "objects.npz"
    np.savez(path, points=points, offsets=ends, labels=labels,
             class_names=np.array(["tree", "car", "pole"]))  # pole: never used
    train, test, meta = load_data(cfg(path), None)
    assert (len(train), len(test)) == (8, 2)
    assert meta["class_names"] == ["tree", "car"]  # the bundle's order, unused classes dropped
    assert sorted(meta["class_names"][i] for i in test.labels.tolist()) == ["car", "tree"]
    for ds in (train, test):
        for source, label, pts in zip(ds.sources, ds.labels.tolist(), ds.clouds, strict=True):
            k = int(source.rsplit("id ", 1)[1].rstrip("]"))
            assert label == labels[k]
            np.testing.assert_array_equal(pts.numpy(), points[ends[k]:ends[k + 1]])
    train, test, _ = load_data(cfg(path, test_groups={"id": [0, 3, 5]}), None)
    assert sorted(test.sources) == sorted(f"{path}[id {k}]" for k in (0, 3, 5))
    assert len(train) == 7


def test_stratified_split_sizes_with_test_fraction(tmp_path):
    class_folder(tmp_path, classes=("a", "b", "c", "d", "e"), per_class=10, ext=".npy")

    def split(seed):
        train, test, _ = load_data(cfg(tmp_path, test_fraction=0.3, split_seed=seed), None)
        return train, test

    train, test = split(0)
    assert (len(train), len(test)) == (35, 15)
    assert torch.bincount(test.labels, minlength=5).tolist() == [3] * 5
    assert torch.bincount(train.labels, minlength=5).tolist() == [7] * 5
    assert set(train.sources).isdisjoint(test.sources)
    again_train, again_test = split(0)
    assert again_test.sources == test.sources and again_train.sources == train.sources
    assert set(split(1)[1].sources) != set(test.sources)


def test_unseen_test_label_is_named(tmp_path):
    class_folder(tmp_path / "train", classes=("a", "b"), per_class=2)
    class_folder(tmp_path / "test", classes=("a", "emu"), per_class=1)
    with pytest.raises(DataError) as info:
        load_data(cfg(tmp_path / "train", test_path=str(tmp_path / "test")), None)
    assert "emu" in str(info.value) and str(tmp_path / "test" / "emu" / "0.xyz") in str(info.value)

    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split\ntrain/a/0.xyz,a,train\ntrain/b/0.xyz,b,train\n"
                        "train/a/1.xyz,owl,test\n")
    with pytest.raises(DataError, match=r"\['owl'\].*1\.xyz"):
        load_data(cfg(manifest), None)


def test_load_file_appends_new_labels(tmp_path):
    class_folder(tmp_path, classes=("dog", "emu"), per_class=1)
    ds = load_file(cfg(tmp_path), str(tmp_path), None, {"class_names": ["cat", "dog"]})
    assert [Path(s).parent.name for s in ds.sources] == ["dog", "emu"]
    assert ds.labels.tolist() == [1, 2]


# --- bad inputs --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*input contained no data:UserWarning")
@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n", "12\n"],
                         ids=["zero_bytes", "blank", "comment", "count_only"])
def test_empty_text_file_is_named(tmp_path, content):
    path = tmp_path / "empty.xyz"
    path.write_text(content)
    assert "holds no points" in bad(path)


def test_empty_off_file_is_named(tmp_path):
    path = tmp_path / "empty.off"
    path.write_text("")
    assert "holds no points" in bad(path)


def test_fewer_than_min_points(tmp_path):
    path = write_rows(tmp_path / "three.xyz", cloud(3))
    message = bad(path)
    assert "3 points" in message and "min_points=4" in message
    assert read_cloud(path, cfg(path, min_points=3)).shape == (3, 3)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_coordinates_name_the_point(tmp_path, value):
    rows = [f"{x:.3f} {y:.3f} {z:.3f}" for x, y, z in cloud(40)]
    rows[17] = f"1.0 {value} 2.0"
    path = tmp_path / "bad.xyz"
    path.write_text("\n".join(rows) + "\n")
    message = bad(path)
    assert "point 17" in message and "NaN or infinite" in message
    points = cloud(40, seed=1)
    points[5, 2] = float(value)
    assert "point 5" in bad(write_npy(tmp_path / "bad.npy", points))


def test_two_column_rows(tmp_path):
    path = write_rows(tmp_path / "flat.xyz", cloud(40, channels=2))
    assert "2 columns" in bad(path) and "x y z" in bad(path)


def test_ragged_rows_name_the_line(tmp_path):
    rows = [" ".join(f"{v:.3f}" for v in row) for row in cloud(40)]
    rows[9] = "1.0 2.0"
    path = tmp_path / "ragged.pts"
    path.write_text("# header\n40\n" + "\n".join(rows) + "\n")  # the data starts on line 3
    message = bad(path)
    assert "line 12" in message and "ragged" in message and "2 columns" in message


def test_words_in_a_row_name_the_line(tmp_path):
    path = tmp_path / "header.txt"
    path.write_text("x,y,z\n" + "\n".join("1,2,3" for _ in range(40)) + "\n")
    message = bad(path)
    assert "line 1" in message and "not a row of numbers" in message


def test_binary_content_in_a_text_file_is_named(tmp_path):
    path = tmp_path / "blob.xyz"
    path.write_bytes(bytes(range(256)) * 4)
    assert "binary content" in bad(path)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "scan.las"
    path.write_bytes(b"LASF" + bytes(300))
    message = bad(path)
    assert "unsupported point-cloud extension '.las'" in message
    assert all(ext in message for ext in EXTENSIONS)
    with pytest.raises(DataError, match=r"no point clouds.*found only \.las"):
        load_data(cfg(tmp_path), None)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nscan.las,tree\n")
    with pytest.raises(DataError, match=r"line 2: scan\.las: unsupported extension '\.las'"):
        load_data(cfg(manifest), None)


def test_corrupt_npy_is_named(tmp_path):
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(np.random.default_rng(0).bytes(1000))
    assert "cannot read .npy" in bad(garbage)
    whole = write_npy(tmp_path / "whole.npy", cloud(40)).read_bytes()
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(whole[: len(whole) - 200])
    assert "cannot read .npy" in bad(truncated)


def bundle_error(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        read_bundle(path, cfg(path))
    assert str(path) in str(info.value)
    return str(info.value)


def test_bundle_missing_offsets(tmp_path):
    points, _, labels, _ = bundle_arrays()
    message = bundle_error(tmp_path / "b.npz", points=points, labels=labels)
    assert "'offsets'" in message and "it has points, labels" in message


def test_bundle_offsets_inconsistent_with_labels(tmp_path):
    points, starts, labels, ends = bundle_arrays()
    path = tmp_path / "b.npz"
    assert "3 offsets for 4 labels" in bundle_error(path, points=points, offsets=starts[:3],
                                                    labels=labels)
    assert "6 offsets for 4 labels" in bundle_error(path, points=points,
                                                    offsets=np.append(ends, 200), labels=labels)
    decreasing = starts[[0, 2, 1, 3]]
    assert "not increasing" in bundle_error(path, points=points, offsets=decreasing, labels=labels)
    beyond = ends.copy()
    beyond[-1] += 10
    assert "not increasing within the 195 points" in bundle_error(path, points=points,
                                                                  offsets=beyond, labels=labels)
    assert "'points' must be [P, >=3]" in bundle_error(path, points=points[:, :2], offsets=starts,
                                                      labels=labels)


def test_bad_cloud_in_bundle_names_its_id(tmp_path, caplog):
    points, starts, labels, _ = bundle_arrays()
    points[45, 1] = np.nan  # cloud 1 (rows 40..89), its point 5
    path = tmp_path / "b.npz"
    np.savez(path, points=points, offsets=starts, labels=labels, ids=np.array([7, 8, 9, 10]))
    with pytest.raises(DataError) as info:
        read_bundle(path, cfg(path))
    message = str(info.value)
    assert f"{path}[id 8]" in message and "point 5" in message and "on_error=skip" in message
    with logged(caplog, r"skipped 1 bad point clouds.*id 8"):
        clouds, _ = read_bundle(path, cfg(path, on_error="skip"))
    assert [c.groups["id"] for c in clouds] == ["7", "9", "10"]


def test_corrupt_npz_bundle_is_named(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(np.random.default_rng(1).bytes(500))
    with pytest.raises(DataError, match=r"junk\.npz: cannot read the \.npz bundle"):
        read_bundle(path, cfg(path))


def test_on_error_skip_drops_bad_file_with_a_counting_warning(tmp_path, caplog):
    class_folder(tmp_path, classes=("a", "b"), per_class=5)
    bad_file = write_rows(tmp_path / "b" / "9.xyz", cloud(3))  # too few points
    with pytest.raises(DataError) as info:
        load_data(cfg(tmp_path), None)
    assert str(bad_file) in str(info.value) and "on_error=skip" in str(info.value)

    with logged(caplog, r"skipped 1 bad point clouds") as messages:
        train, test, meta = load_data(cfg(tmp_path, on_error="skip"), None)
    assert any(str(bad_file) in m for m in messages)
    kept = train.sources + test.sources
    assert len(kept) == 10 and str(bad_file) not in kept
    assert meta["class_names"] == ["a", "b"]


def test_on_error_skip_keeps_manifest_splits_aligned(tmp_path, caplog):
    class_folder(tmp_path, classes=("a", "b"), per_class=3)
    (tmp_path / "a" / "bad.xyz").write_text("1 2\n3 4\n")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split\na/bad.xyz,a,train\na/0.xyz,a,train\nb/0.xyz,b,train\n"
                        "a/1.xyz,a,test\nb/1.xyz,b,test\na/2.xyz,a,train\n")
    with logged(caplog, "skipped 1 bad point clouds"):
        train, test, _ = load_data(cfg(manifest, on_error="skip"), None)
    def names(ds: PointClouds) -> list[str]:
        return [Path(s).relative_to(tmp_path).as_posix() for s in ds.sources]

    assert names(train) == ["a/0.xyz", "b/0.xyz", "a/2.xyz"]
    assert names(test) == ["a/1.xyz", "b/1.xyz"]


def test_on_error_skip_with_only_bad_files_raises(tmp_path, caplog):
    for i in range(3):
        write_rows(tmp_path / f"{i}.xyz", cloud(2, seed=i))
    with logged(caplog, "skipped 3 bad point clouds"), \
            pytest.raises(DataError, match="no readable point clouds"):
        load_data(cfg(tmp_path, on_error="skip"), None)


# --- malformed files: each a DataError naming the file ------------------------------------------


def test_zero_byte_npy_is_a_named_data_error(tmp_path):
    path = tmp_path / "empty.npy"
    path.write_bytes(b"")
    bad(path)


def test_zero_byte_npz_bundle_is_a_named_data_error(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty.npz"):
        read_bundle(path, cfg(path))


def test_truncated_npz_bundle_is_a_named_data_error(tmp_path):
    points, starts, labels, _ = bundle_arrays()
    whole = tmp_path / "whole.npz"
    np.savez(whole, points=points, offsets=starts, labels=labels)
    path = tmp_path / "truncated.npz"
    path.write_bytes(whole.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated.npz"):
        read_bundle(path, cfg(path))


def test_off_with_only_its_header_is_a_named_data_error(tmp_path):
    path = tmp_path / "header_only.off"
    path.write_text("OFF\n")
    bad(path)


def test_binary_off_is_a_named_data_error(tmp_path):
    path = tmp_path / "blob.off"
    path.write_bytes(bytes(range(256)) * 4)
    bad(path)


def test_row_numpy_cannot_parse_is_a_named_data_error(tmp_path):
    path = tmp_path / "underscore.xyz"
    path.write_text("1_0 2 3\n" + "4 5 6\n" * 40)
    bad(path)


def test_ragged_row_after_inline_comment_names_the_ragged_line(tmp_path):
    path = tmp_path / "inline.xyz"
    path.write_text("1 2 3  # first return\n" + "4 5 6\n" * 40 + "7 8\n")
    message = bad(path)
    assert "line 42" in message and "ragged" in message


def test_bundle_label_beyond_class_names_is_a_named_data_error(tmp_path):
    points, starts, _, _ = bundle_arrays()
    bundle_error(tmp_path / "b.npz", points=points, offsets=starts, labels=np.array([0, 1, 5, 0]),
                 class_names=np.array(["tree", "car"]))


def test_bundle_negative_label_is_a_named_data_error(tmp_path):
    points, starts, _, _ = bundle_arrays()
    bundle_error(tmp_path / "b.npz", points=points, offsets=starts, labels=np.array([0, 1, -1, 0]),
                 class_names=np.array(["tree", "car"]))


def test_bundle_ids_of_wrong_length_is_a_named_data_error(tmp_path):
    points, starts, labels, _ = bundle_arrays()
    bundle_error(tmp_path / "b.npz", points=points, offsets=starts, labels=labels,
                 ids=np.array([1, 2]))


def test_unlabelled_bundle_offsets_with_final_end(tmp_path):
    points, _, _, ends = bundle_arrays()
    path = tmp_path / "b.npz"
    np.savez(path, points=points, offsets=ends)
    clouds, _ = read_bundle(path, cfg(path))
    assert [len(c.points) for c in clouds] == [40, 50, 60, 45]


# --- degenerate and huge clouds ----------------------------------------------------------------


def test_cloud_of_one_repeated_point(tmp_path):
    path = write_rows(tmp_path / "same.xyz", np.tile([[1.0, 2.0, 3.0]], (100, 1)))
    points = read_cloud(path, cfg(path))
    assert points.shape == (100, 3) and (points == [1, 2, 3]).all()
    start = time.perf_counter()
    for num_points in (64, 256):  # fewer and more than the cloud's 100 points
        for subsample in ("fps", "random"):
            ds = PointClouds([Cloud(points, "a", str(path))], ["a"], num_points, subsample)
            for view in (ds[0][0], ds.sample(0, torch.Generator().manual_seed(3))[0]):
                assert view.shape == (num_points, 3)
                assert torch.isfinite(view).all() and (view == 0).all()
        picked = fit_count(torch.from_numpy(points), num_points, None, "fps")
        assert picked.shape == (num_points, 3) and (picked == torch.tensor([1.0, 2.0, 3.0])).all()
        assert fit_count(torch.from_numpy(points), num_points, torch.Generator().manual_seed(0),
                         "fps").shape == (num_points, 3)
    assert time.perf_counter() - start < 5
    t = torch.from_numpy(points)
    sphere = normalize(t, ["unit_sphere"])
    torch.testing.assert_close(sphere[0], torch.tensor([1.0, 2.0, 3.0]) / 14 ** 0.5)
    assert (normalize(t, ["height"])[:, 2] == 0).all()
    feats = raw_features(PointClouds([Cloud(points, "a", "x")], ["a"], 64))
    assert feats.shape == (1, 47) and torch.isfinite(feats).all()


def test_two_million_point_npy_is_thinned_deterministically(tmp_path):
    n = 2_000_000
    rng = np.random.default_rng(0)
    big = rng.normal(size=(n, 3)).astype(np.float32)
    big[:, 0] = np.arange(n, dtype=np.float32)  # exact in float32: row i carries i
    path = write_npy(tmp_path / "big.npy", big)
    start = time.perf_counter()
    conf = cfg(path)
    out = read_cloud(path, conf)
    assert out.shape == (conf.max_points, 3) == (16384, 3)
    assert out.dtype == np.float32 and out.nbytes == 16384 * 12
    rows = out[:, 0].astype(np.int64)
    assert (np.diff(rows) > 0).all() and rows[-1] - rows[0] > n // 2  # spread, in file order
    np.testing.assert_array_equal(out, big[rows])
    np.testing.assert_array_equal(read_cloud(path, conf), out)
    small = read_cloud(path, cfg(path, max_points=1000))
    assert small.shape == (1000, 3)
    (tmp_path / "alias.npy").symlink_to(path)  # another source, another (seeded) subset
    assert not np.array_equal(read_cloud(tmp_path / "alias.npy", conf), out)
    assert time.perf_counter() - start < 5


# --- samples -----------------------------------------------------------------------------------


def test_small_cloud_resampled_with_replacement_and_counted(tmp_path, caplog):
    points = cloud(20, seed=8)
    clouds = [Cloud(points, "a", "s"), Cloud(cloud(64, seed=9), "a", "m"),
              Cloud(cloud(100, seed=10), "b", "l")]
    ds = PointClouds(clouds, ["a", "b"], 64, steps=[])
    assert ds.num_resampled == 1
    rows = {tuple(r) for r in points.tolist()}
    for view in (ds[0][0], ds.sample(0, torch.Generator().manual_seed(0))[0]):
        assert view.shape == (64, 3)
        assert {tuple(r) for r in view.tolist()} == rows  # every point, and only those
    class_folder(tmp_path, classes=("a", "b"), per_class=3, n=40)
    write_rows(tmp_path / "a" / "small.xyz", cloud(33, seed=5))
    with logged(caplog, "1 of .* clouds have fewer than data.num_points=34"):
        train, test, _ = load_data(cfg(tmp_path, num_points=34, test_fraction=0.25,
                                       split_seed=1), None)
    assert train.num_resampled + test.num_resampled == 1


@pytest.mark.parametrize("subsample", ["random", "fps"])
def test_training_samples_are_seeded_per_generator(subsample):
    points = cloud(500, seed=11)
    ds = PointClouds([Cloud(points, "a", "x")], ["a"], 64, subsample, steps=[])
    views = [ds.sample(0, torch.Generator().manual_seed(s))[0] for s in (0, 0, 1, 2)]
    assert torch.equal(views[0], views[1])
    assert not torch.equal(views[0], views[2]) and not torch.equal(views[2], views[3])
    rows = {tuple(r) for r in points.tolist()}
    for view in views:
        picked = [tuple(r) for r in view.tolist()]
        assert len(set(picked)) == 64 and set(picked) <= rows  # distinct points of the cloud
    normalised = PointClouds([Cloud(points, "a", "x")], ["a"], 64, subsample)
    sample, label = normalised.sample(0, torch.Generator().manual_seed(0))
    assert int(label) == 0
    torch.testing.assert_close(sample.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    assert sample.norm(dim=1).max() == pytest.approx(1.0, abs=1e-6)


def test_eval_view_is_fps_from_the_first_point_and_cached():
    points = cloud(300, seed=12)
    ds = PointClouds([Cloud(points, "b", "x")], ["a", "b"], 32, steps=[])
    view, label = ds[0]
    assert int(label) == 1 and view.shape == (32, 3)
    assert ds[0][0] is view  # cached
    fresh = PointClouds([Cloud(points, "b", "x")], ["a", "b"], 32, steps=[])
    assert torch.equal(fresh[0][0], view)
    assert torch.equal(view[0], torch.from_numpy(points[0]))
    far = np.argmax(((points - points[0]) ** 2).sum(1))
    assert torch.equal(view[1], torch.from_numpy(points[far]))
    unlabelled = PointClouds([Cloud(points, None, "x")], [], 32)
    assert int(unlabelled[0][1]) == -1


def test_normalize_center_unit_sphere_height():
    rng = np.random.default_rng(13)
    points = torch.from_numpy(rng.normal(size=(2, 200, 3)) * [3, 1, 2] + [5, -3, 10]).float()
    centred = normalize(points, ["center"])
    torch.testing.assert_close(centred.mean(1), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(centred - points, (centred - points)[:, :1].expand_as(points))
    sphere = normalize(points, ["center", "unit_sphere"])
    torch.testing.assert_close(sphere.norm(dim=-1).amax(-1), torch.ones(2))  # per cloud
    height = normalize(points, ["height"])
    torch.testing.assert_close(height[..., 2].amin(-1), torch.zeros(2))
    torch.testing.assert_close(height[..., :2], points[..., :2])
    both = normalize(points, ["center", "unit_sphere", "height"])
    assert both[..., 2].amin() == 0 and both.norm(dim=-1).amax() <= 2.0
    with pytest.raises(ConfigError, match="'scale' is not one of"):
        normalize(points, ["scale"])


def test_normalize_leaves_extra_columns_untouched():
    rng = np.random.default_rng(14)
    points = torch.from_numpy(rng.normal(size=(100, 5)) * 7 + 3).float()
    out = normalize(points, ["center", "unit_sphere", "height"])
    assert out.shape == (100, 5)
    torch.testing.assert_close(out[:, 3:], points[:, 3:], rtol=0, atol=0)
    assert not torch.allclose(out[:, :3], points[:, :3])
    ds = PointClouds([Cloud(points.numpy(), "a", "x")], ["a"], 50)
    assert ds.channels == 5
    view = ds[0][0]
    extra = {tuple(r) for r in points[:, 3:].tolist()}
    assert {tuple(r) for r in view[:, 3:].tolist()} <= extra


def test_invalid_sampling_settings_are_config_errors():
    clouds = [Cloud(cloud(40), "a", "x")]
    with pytest.raises(ConfigError, match="data.subsample"):
        PointClouds(clouds, ["a"], 32, "grid")
    with pytest.raises(ConfigError, match="data.normalize"):
        PointClouds(clouds, ["a"], 32, steps=["scale"])
    with pytest.raises(ConfigError, match="num_points"):
        PointClouds(clouds, ["a"], 0)


def test_raw_features_shape_and_finite(tmp_path):
    class_folder(tmp_path, classes=("a", "b"), per_class=3, n=60)
    train, test, _ = load_data(cfg(tmp_path, num_points=48, test_fraction=1 / 3), None)
    feats = raw_features(train)
    assert feats.shape == (len(train), 47) == (4, 47)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    torch.testing.assert_close(feats[:, :32].sum(1), torch.ones(4))  # a distance histogram
    eig = feats[:, -3:]
    assert (eig[:, :-1] >= eig[:, 1:]).all() and (eig > 0).all()  # largest first
    assert torch.equal(raw_features(train), feats)  # evaluation views: deterministic


# --- DALES objects (shared data) ---------------------------------------------------------------


def test_dales_objects_bundle_and_raw_xyz(shared_data):
    folder = shared_data / "pointcloud" / "dales_objects_500"
    if not folder.is_dir():
        pytest.skip(f"DALES objects not found at {folder}; see the README's shared data")
    bundle = folder / "dales_objects_all_points.npz"
    train, test, meta = load_data(PointCloudDataConfig(path=str(bundle)), None)
    assert (len(train), len(test)) == (399, 100)
    assert meta["class_names"] == ["building", "car", "fence", "pole", "tree"]
    assert meta["in_channels"] == 3
    assert set(test.labels.tolist()) == set(range(5))
    assert max(len(c) for c in train.clouds + test.clouds) <= 16384  # large objects thinned
    raw = read_cloud(folder / "raw_xyz" / "000.xyz", PointCloudDataConfig())
    assert raw.ndim == 2 and raw.shape == (1809, 3) and raw.dtype == np.float32
    clouds, _ = read_bundle(bundle, PointCloudDataConfig())
    first = clouds[0].points.astype(np.float64)
    assert first.shape == raw.shape
    shift = raw - first  # the bundle holds the same object, centred
    np.testing.assert_allclose(shift, np.broadcast_to(shift.mean(0), shift.shape), atol=1e-2)
