"""Point-JEPA end to end on synthetic shapes: the recipe says what the paper's configuration says,
a step trains, the teacher reads the student's tokens, the student is exported, and JEPA's
collate-side augmentations transform the input itself."""

from __future__ import annotations

import copy

import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa.build import (
    build_augmentations,
    build_masker,
    build_objective,
    load_datasets,
    load_recipe,
)
from polyjepa.data import Collate, SeededDataset
from polyjepa.train import pretrain

TINY = ["synthetic=true", "model.frontend.num_points=256", "model.frontend.num_groups=16",
        "model.frontend.group_size=8", "model.tokenizer.dim=32",
        "model.tokenizer.widths=[16,32,64]", "model.encoder.depth=1", "model.encoder.num_heads=2",
        "model.predictor.dim=16", "model.predictor.depth=1", "model.predictor.num_heads=2",
        "train.batch_size=8", "train.progress=false", "train.device=cpu", "train.max_steps=2",
        "train.checkpoint_every=1000", "train.monitor_every=1000", "optim.warmup_steps=0"]


def test_recipe_holds_the_reference_configuration():
    cfg = load_recipe("point_jepa").cfg
    front, tok, enc, pred = (cfg.model.frontend, cfg.model.tokenizer, cfg.model.encoder,
                             cfg.model.predictor)
    assert (front["num_points"], front["num_groups"], front["group_size"]) == (1024, 64, 32)
    assert front["sequencer"] == "nearest_min_start"
    assert (tok["dim"], enc["depth"], enc["num_heads"], enc["drop_path"]) == (384, 12, 6, 0.25)
    assert enc["pos_every_layer"] is True
    assert (pred["dim"], pred["depth"], pred["num_heads"]) == (192, 6, 6)
    assert cfg.masker == {"name": "contiguous_spans", "target_ratio": [0.15, 0.2], "num_targets": 4,
                          "context": "contiguous", "context_ratio": [0.4, 0.75], "per_batch": True}
    assert cfg.objective["loss"] == "smooth_l1" and cfg.objective["beta"] == 2.0
    assert (cfg.ema.start, cfg.ema.end, cfg.ema.schedule) == (0.9995, 0.99999, "linear")
    assert (cfg.optim.lr, cfg.optim.start_lr, cfg.optim.min_lr, cfg.optim.weight_decay) == \
        (1e-3, 1e-5, 1e-6, 0.05)
    assert [a["name"] for a in cfg.augmentations] == ["pointcloud.scale", "pointcloud.normalize",
                                                      "pointcloud.rotate"]
    assert cfg.eval.pooling == "mean_max" and "svm" in cfg.eval.protocols


@pytest.fixture(scope="module")
def parts():
    recipe = load_recipe("point_jepa", TINY)
    train, _, meta = load_datasets(recipe)
    torch.manual_seed(0)
    objective = build_objective(recipe, meta)
    masker = build_masker(recipe, meta, objective.online.layout)
    collate = Collate(masker, build_augmentations(recipe, meta), objective.num_views)
    seeded = SeededDataset(train)
    batch = collate([seeded[(i, 123, 0)] for i in range(8)])
    return recipe, objective, batch, seeded


def test_masks_are_one_contiguous_draw_per_batch_on_the_16_groups(parts):
    _, _, batch, _ = parts
    masks = batch.masks
    assert (masks.target == masks.target[:1]).all() and (masks.context == masks.context[:1]).all()
    assert (masks.target.diff(dim=-1) == 1).all() and masks.target.max() < 16
    assert not set(masks.context[0].tolist()) & set(masks.target[0].flatten().tolist())


def test_jepa_augments_the_input_itself(parts):
    _, _, batch, seeded = parts
    plain = torch.stack([seeded[(i, 123, 0)][0][0] for i in range(8)])
    assert batch.views == [] and batch.x.shape == plain.shape
    assert not torch.allclose(batch.x, plain)  # scaled and rotated ...
    torch.testing.assert_close(batch.x.mean(1), torch.zeros(8, 3), atol=1e-5, rtol=0)  # re-centred
    # ... about y alone, after a per-axis scale: unit sphere holds
    torch.testing.assert_close(batch.x.norm(dim=-1).amax(1), torch.ones(8), atol=1e-5, rtol=0)


def test_teacher_reads_the_students_tokens_and_the_student_is_exported(parts):
    _, objective, batch, _ = parts
    objective = copy.deepcopy(objective).train()
    torch.manual_seed(1)
    loss, _ = objective(batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert objective.online.tokenizer.embed.first[0].weight.grad.abs().sum() > 0
    # scrambling the teacher's own tokenizer copy changes nothing: it is not used
    with torch.no_grad():
        for p in objective.target.tokenizer.parameters():
            p.normal_()
    torch.manual_seed(1)
    again, _ = objective(batch)
    torch.testing.assert_close(again, loss)
    assert objective.export_backbone() is objective.online


def test_target_export_with_online_tokens_pairs_the_online_tokenizer(parts):
    recipe = load_recipe("point_jepa", [*TINY, "objective.export=target"])
    _, _, meta = load_datasets(recipe)
    objective = build_objective(recipe, meta)
    exported = objective.export_backbone()
    assert exported.encoder is objective.target.encoder
    assert exported.tokenizer is objective.online.tokenizer


def test_point_jepa_pretrains_evaluates_and_finetunes(tmp_path):
    from polyjepa.evaluate import evaluate_run
    from polyjepa.finetune import finetune_run

    run = pretrain("point_jepa", [*TINY, "eval.few_shot_shots=[5]",
                                  "eval.few_shot_episodes=2"], tmp_path / "run")
    result = evaluate_run(run, device="cpu")
    assert set(result["svm"]) == {"pretrained", "random_init", "raw_features"}
    assert result["svm"]["raw_features"] > 0.5  # 4 synthetic shapes: chance is 0.25
    assert "4way_5shot" in result["few_shot"]
    tuned = finetune_run(run, device="cpu", overrides=["finetune.max_steps=2",
                                                      "finetune.batch_size=8"])
    assert 0.0 <= tuned["finetune"] <= 1.0 and tuned["n_test"] == 80
