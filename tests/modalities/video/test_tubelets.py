"""The video ViT path: tubelet tokens with 3-D sin-cos positions, spatio-temporal tube masks, and
video JEPA / VJ-VCR runs from pretraining to probes on the synthetic clips."""

from __future__ import annotations

import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa.build import build_masker, build_objective, load_datasets, load_recipe
from polyjepa.evaluate import evaluate_run
from polyjepa.modalities.video.tokenizer import TubeletPatches
from polyjepa.posembed import sincos_grid
from polyjepa.train import pretrain

RUN = ["synthetic=true", "train.batch_size=8", "train.progress=false", "train.device=cpu",
       "train.max_steps=3", "train.checkpoint_every=1000", "train.monitor_every=1000",
       "optim.warmup_steps=0"]
TUBES = [*RUN, "model.tokenizer.patch=8", "model.tokenizer.dim=48", "model.encoder.depth=1",
         "model.predictor.dim=24", "model.predictor.depth=1", "masker.min_keep=4"]


def test_each_token_reads_its_own_tubelet_in_time_major_order():
    torch.manual_seed(0)
    tok = TubeletPatches(channels=1, num_frames=9, frame_size=(34, 32), dim=24, patch=8, tubelet=2)
    assert tok.grid == (4, 4, 4) and tok.layout["num_tokens"] == 64  # the 9th frame, 2 rows dropped
    x = torch.rand(2, 9, 1, 34, 32)
    base = tok(x)
    assert base.x.shape == (2, 64, 24) and base.pos.shape == (64, 24)
    changed = x.clone()
    changed[:, 4:6, :, 8:16, 24:32] += 1.0  # tubelet (t=2, row=1, col=3)
    moved = (tok(changed).x - base.x).abs().sum(-1)  # [B, N]
    assert moved.nonzero()[:, 1].unique().tolist() == [2 * 16 + 1 * 4 + 3]
    extra = x.clone()
    extra[:, 8] += 1.0
    extra[:, :, :, 32:] += 1.0
    torch.testing.assert_close(tok(extra).x, base.x)  # what no whole tubelet holds is dropped


def test_sincos_grid_gives_every_cell_its_own_position():
    pos = sincos_grid((4, 3, 5), 48)
    assert pos.shape == (60, 48)
    assert torch.cdist(pos, pos).add(torch.eye(60)).min() > 0.1
    # [sin(t) sin(h) sin(w) cos(t) cos(h) cos(w)], 8 frequencies each: the time columns are
    # equal within a time step, the others are not
    time = torch.cat([pos[:, :8], pos[:, 24:32]], dim=1)
    torch.testing.assert_close(time[:15], time[:1].expand(15, -1))
    assert not torch.allclose(pos[:15, 8:24], pos[:1, 8:24].expand(15, -1))
    with pytest.raises(ValueError, match="divisible by 12"):
        sincos_grid((2, 2, 2), 40)
    with pytest.raises(ValueError, match="tubelet"):
        TubeletPatches(channels=1, num_frames=1, frame_size=(32, 32), tubelet=2)


def test_tube_masks_span_every_time_step_and_spare_the_context():
    recipe = load_recipe("video_tube_jepa", TUBES)
    _, _, meta = load_datasets(recipe)
    obj = build_objective(recipe, meta)
    assert isinstance(obj.online.tokenizer, TubeletPatches)
    layout = obj.online.layout
    assert layout["grid"] == (8, 4, 4)
    masks = build_masker(recipe, meta, layout)(16, torch.Generator().manual_seed(0))
    for b in range(16):
        context = set(masks.context[b].tolist())
        for block in masks.target[b]:
            cells = {(int(i) // 16, int(i) % 16) for i in block}
            spatial = {s for _, s in cells}
            assert cells == {(t, s) for t in range(8) for s in spatial}  # a tube through time
            assert not context & set(block.tolist())
        # the context is every token no target covers (V-JEPA), up to the batch's common size
        free = set(range(128)) - set(masks.target[b].flatten().tolist())
        assert context <= free and len(context) == masks.context.shape[1] >= 4


@pytest.mark.parametrize("name, overrides", [
    ("video_tube_jepa", TUBES),
    ("vj_vcr", [*RUN, "masker.target_steps=5", "model.encoder.dim=16",
                "model.encoder.widths=[8,8,8]", "model.predictor.hidden=32"]),
])
def test_video_recipes_pretrain_and_probe_digits_and_dynamics(name, overrides, tmp_path):
    run = pretrain(name, overrides, tmp_path / "run")
    result = evaluate_run(run, device="cpu")
    assert set(result["linear_probe"]) == {"pretrained", "random_init", "raw_features"}
    velocity = result["targets"]["velocity"]
    assert velocity.pop("metric") == "r2"
    assert set(velocity) == {"pretrained", "random_init", "raw_features"}
    assert all(-1e6 < v <= 1.0 for v in velocity.values())
