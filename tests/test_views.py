"""LeJEPA's views: global and local chains of different sizes (collate-side and device-side),
the modalities' local crops, and every `le_jepa_<modality>_demo` training a few steps on its
plugin's synthetic data."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import build, read_metrics, single_thread, tiny_recipe  # noqa: F401

from polyjepa.build import assemble, load_recipe, split_local_augmentations
from polyjepa.contracts import conform
from polyjepa.data import Collate
from polyjepa.errors import ConfigError
from polyjepa.modalities.audio.augment import TimeCrop
from polyjepa.modalities.pointcloud.transforms import LocalCrop
from polyjepa.modalities.video.augment import ClipCrop
from polyjepa.train import pretrain

FAST = ["train.batch_size=8", "train.progress=false", "train.device=cpu", "train.max_steps=2",
        "train.checkpoint_every=1000", "train.monitor_every=1000", "train.probe_every=null",
        "train.keep_checkpoints=[]", "optim.warmup_steps=0", "objective.num_slices=32",
        "synthetic=true"]
DEMOS = {
    "le_jepa_tabular_demo": ["model.tokenizer.dim=16", "model.encoder.depth=1"],
    "le_jepa_audio_demo": ["model.encoder.d=64"],
    "le_jepa_pointcloud_demo": ["model.frontend.num_points=256", "model.frontend.num_groups=16",
                                "model.frontend.group_size=8", "model.tokenizer.dim=32",
                                "model.tokenizer.widths=[16,32,64]", "model.encoder.depth=1",
                                "model.encoder.num_heads=2"],
    "le_jepa_video_demo": ["model.encoder.dim=32", "model.encoder.widths=[8,16,16]"],
    "le_jepa_timeseries_demo": ["model.tokenizer.dim=24", "model.encoder.depth=1"],
}


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_every_lejepa_demo_trains_on_its_synthetic_data(name, tmp_path):
    run = pretrain(name, [*FAST, *DEMOS[name]], tmp_path / "run")
    rows = [r for r in read_metrics(run) if "sigreg" in r]
    assert rows and all(math.isfinite(r["loss"]) and r["sigreg"] > 0 for r in rows)
    assert (run / "encoder.pt").is_file()


def test_lejepa_trains_the_causal_series_encoder(tmp_path):
    """TS-JEPA's rollout encoder (each patch sees the ones before it), pooled on the last patch."""
    overrides = [*FAST, *DEMOS["le_jepa_timeseries_demo"], "model.encoder.causal_window=10",
                 "objective.pooling=last"]
    run = pretrain("le_jepa_timeseries_demo", overrides, tmp_path / "run")
    assert all(math.isfinite(r["loss"]) for r in read_metrics(run) if "loss" in r)


def cloud_recipe(**objective) -> list[str]:
    return [*FAST, *DEMOS["le_jepa_pointcloud_demo"], f"objective.views={objective['views']}",
            f"objective.global_views={objective['global_views']}"]


def test_collate_makes_global_views_then_local_ones():
    collate = Collate(None, [lambda x, g: x + 1], 4, [lambda x, g: x[:, :2] * 0], 2)
    batch = collate([((torch.ones(3), 0), 7, 0), ((torch.ones(3), 1), 7, 0)])
    assert [tuple(v.shape) for v in batch.views] == [(2, 3), (2, 3), (2, 2), (2, 2)]
    assert torch.equal(batch.views[0], torch.full((2, 3), 2.0))
    assert torch.equal(batch.views[3], torch.zeros(2, 2))


def test_point_cloud_local_crops_go_through_the_encoder_as_their_own_batch():
    recipe = load_recipe("le_jepa_pointcloud_demo", cloud_recipe(views=5, global_views=2))
    recipe.cfg.local_augmentations = [
        {"name": "pointcloud.crop", "fraction": 0.5},
        {"name": "pointcloud.normalize", "steps": ["center", "unit_sphere"]}]
    run = assemble(recipe)
    batch = run.collate([(run.splits.train[i], 3, 0) for i in range(4)])
    p = run.splits.train[0][0].shape[0]
    assert [v.shape[1] for v in batch.views] == [p, p, p // 2, p // 2, p // 2]
    seen: list[int] = []
    hook = run.objective.online.encoder.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].x.shape[0]))
    loss, logs = run.objective(batch)
    hook.remove()
    assert seen == [2 * 4, 3 * 4]  # global, then local views: two batches of one size each
    loss.backward()
    assert math.isfinite(float(loss)) and float(logs["sigreg"]) > 0


def test_audio_local_views_are_shorter_and_drawn_apart_from_the_global_ones():
    overrides = [*FAST, *DEMOS["le_jepa_audio_demo"], "objective.views=4",
                 "objective.global_views=2"]
    recipe = load_recipe("le_jepa_audio_demo", overrides)
    recipe.cfg.local_augmentations = [{"name": "audio.time_crop", "fraction": 0.5},
                                      {"name": "audio.post_normalize"}]
    run = assemble(recipe)
    assert run.collate.num_views == 0  # the device makes both groups from the features
    batch = run.collate([(run.splits.train[i], 5, 0) for i in range(4)])
    global_views, local_views = run.objective.view_features(batch)
    t = global_views.shape[-1]
    assert global_views.shape[0] == 8 and local_views.shape[0] == 8
    assert local_views.shape[-1] == round(t / 2)
    loss, _ = run.objective(batch)
    assert math.isfinite(float(loss))


def test_local_views_need_an_objective_that_has_them():
    raw = tiny_recipe(objective={"name": "byol"},
                      augmentations=[{"name": "tabular.corrupt", "rate": 0.3}],
                      local_augmentations=[{"name": "tabular.corrupt", "rate": 0.6}])
    raw["model"]["projector"] = {"name": "mlp", "hidden_dim": 32, "out_dim": 8}
    raw["model"]["predictor"] = {"name": "mlp", "hidden_dim": 32, "out_dim": 8}
    raw["masker"] = None
    with pytest.raises(ConfigError, match="objective 'byol' makes no local views"):
        assemble(build(raw))
    raw["objective"] = {"name": "lejepa", "views": 2}  # every view global: no local ones either
    raw["model"]["predictor"] = None
    with pytest.raises(ConfigError, match="objective.global_views < objective.views"):
        assemble(build(raw))


def test_local_views_are_made_where_the_global_ones_are():
    recipe = load_recipe("le_jepa_audio_demo", [*FAST, *DEMOS["le_jepa_audio_demo"],
                                                "objective.views=3", "objective.global_views=1"])
    recipe.cfg.local_augmentations = [{"name": "pointcloud.crop"}]
    with pytest.raises(ConfigError, match="local_augmentations"):
        assemble(recipe)  # a collate-side crop after BYOL-A's device-side chain
    with pytest.raises(ConfigError, match="must be collate-side"):
        split_local_augmentations([conform(TimeCrop(), "augmentation", "t")], on_device=False)
    with pytest.raises(ConfigError, match="must be device-side"):
        split_local_augmentations([conform(LocalCrop(), "augmentation", "t")], on_device=True)


def test_point_cloud_crop_keeps_the_points_nearest_one_of_them():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 200, 4)
    out = LocalCrop(fraction=0.25)(x, g)
    assert out.shape == (3, 50, 4)
    for cloud, crop in zip(x, out, strict=True):
        exact = "donot_use_mm_for_euclid_dist"
        assert torch.cdist(crop, cloud, compute_mode=exact).min(dim=1).values.max() == 0  # its points
        # ... the 50 nearest one of them (its centre), whatever the extra column holds
        nearest = [set(torch.cdist(c[None, :3], cloud[:, :3])[0].topk(50, largest=False)
                       .indices.tolist()) for c in crop]
        held = set(torch.cdist(crop, cloud).argmin(dim=1).tolist())
        assert held in nearest
    with pytest.raises(ValueError, match="fraction"):
        LocalCrop(fraction=0.0)


def test_random_windows_slice_each_example_along_any_dim():
    from polyjepa.crops import random_windows

    g = torch.Generator().manual_seed(0)
    x = torch.arange(5 * 12 * 3, dtype=torch.float32).view(5, 12, 3)  # [B, T, C]
    out = random_windows(x, 4, 1, g)
    assert out.shape == (5, 4, 3)
    starts = ((out[:, 0, 0] - x[:, 0, 0]) / 3).long().tolist()
    for i, start in enumerate(starts):
        assert torch.equal(out[i], x[i, start:start + 4])
    assert len(set(starts)) > 1 and all(0 <= s <= 8 for s in starts)  # per example, in range
    assert torch.equal(random_windows(x, 12, 1, g), x)  # the whole length is the identity
    with pytest.raises(ValueError, match="does not fit"):
        random_windows(x, 13, 1, g)


def test_audio_time_crop_is_a_window_of_each_example():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(4 * 2 * 3 * 20, dtype=torch.float32).view(4, 2, 3, 20)
    out = TimeCrop(fraction=0.3)(x, g)
    assert out.shape == (4, 2, 3, 6)
    starts = out[:, 0, 0, 0] - x[:, 0, 0, 0]
    for i, start in enumerate(starts.long().tolist()):
        assert torch.equal(out[i], x[i, ..., start:start + 6])
    assert len(set(starts.tolist())) > 1  # drawn per example


def test_video_crop_keeps_consecutive_frames_and_resizes_a_box():
    g = torch.Generator().manual_seed(0)
    b, t, h, w = 3, 10, 16, 16
    ramp = torch.arange(w, dtype=torch.float32).expand(h, w)  # pixel value = its column
    x = torch.stack([torch.stack([ramp + 100 * f for f in range(t)]) for _ in range(b)])[:, :, None]
    assert torch.equal(ClipCrop(scale=(1.0, 1.0))(x, g), x)  # the whole frame is the identity
    out = ClipCrop(frames=4, scale=(0.5, 0.5))(x, g)
    assert out.shape == (b, 4, 1, h, w)
    frame_index = (out[:, :, 0, 8, 8] / 100).floor()
    assert torch.equal(frame_index[:, 1:] - frame_index[:, :-1], torch.ones(b, 3))  # consecutive
    # a box of half the side resized to the full side: the column ramp rises half as fast
    rows = out[:, :, 0, 8, 2:-2] - 100 * frame_index[..., None]
    slopes = rows[..., 1:] - rows[..., :-1]
    assert torch.allclose(slopes, torch.full_like(slopes, 0.5), atol=1e-3)
    with pytest.raises(ValueError, match="scale"):
        ClipCrop(scale=(0.5, 1.5))
