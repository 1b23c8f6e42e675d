"""`polyjepa finetune` (encoder + linear head, end to end, with regularized masking), evaluation
with data overrides, and the command-line and recipe plumbing added with them."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from polyjepa.build import build_backbone, load_datasets, recipe_from_dict, split_augmentations
from polyjepa.checkpoint import load_file
from polyjepa.cli import main
from polyjepa.config import deep_merge
from polyjepa.errors import ConfigError
from polyjepa.evaluate import evaluate_run
from polyjepa.finetune import RESULT_FILE, WEIGHTS_FILE, Classifier, accuracy, finetune_run
from polyjepa.hub import load_encoder, read_run_config
from polyjepa.train import pretrain
from polyjepa.types import Tokens
from tests._helpers import single_thread  # noqa: F401


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, recipe_writer):
    """A tiny JEPA run on scikit-learn's breast-cancer table (80/20 split), 6 steps."""
    root = tmp_path_factory.mktemp("ft")
    recipe = recipe_writer(root, {"train": {"max_steps": 6}}, synthetic=False)
    torch.set_num_threads(1)
    return pretrain(recipe, [], root / "run")


def test_finetune_trains_the_encoder_and_reports_beside_the_probe(run_dir):
    result = finetune_run(run_dir, ["finetune.max_steps=60", "finetune.batch_size=32",
                                    "finetune.lr=3e-3", "finetune.warmup_steps=5"],
                          device="cpu", progress=False)
    assert set(result) >= {"finetune", "linear_probe", "n_train", "n_test", "steps"}
    assert result["n_train"] == 455 and result["n_test"] == 114 and result["steps"] == 60
    assert json.loads((run_dir / RESULT_FILE).read_text()) == result
    # breast cancer: a majority-class guess scores ~0.63; a trained classifier does far better
    assert result["finetune"] > 0.85 and result["linear_probe"] > 0.85
    # the fine-tuned weights are saved beside the result, and score what it says
    saved = load_file(run_dir / WEIGHTS_FILE)
    recipe = recipe_from_dict(saved["config"], "finetuned.pt")
    backbone = build_backbone(recipe, saved["meta"])
    backbone.load_state_dict(saved["backbone"])
    model = Classifier(backbone, len(saved["class_names"]), saved["pooling"], backbone.dim)
    model.head.load_state_dict(saved["head"])
    model.norm.load_state_dict(saved["norm"])
    test_set = load_datasets(recipe)[1]
    assert accuracy(model, test_set, 64, torch.device("cpu")) == result["finetune"]
    assert not torch.equal(saved["backbone"]["encoder.norm.weight"],
                           load_encoder(run_dir).state_dict()["encoder.norm.weight"])  # trained


def test_finetune_batch_larger_than_the_data_is_capped(run_dir):
    with pytest.warns(UserWarning, match=r"finetune.batch_size=1000 is larger than the 455"):
        result = finetune_run(run_dir, ["finetune.max_steps=2", "finetune.batch_size=1000"],
                              device="cpu", progress=False)
    assert result["batch_size"] == 455


def test_finetune_rejects_overrides_of_pretraining_keys(run_dir):
    with pytest.raises(ConfigError, match="only finetune.*, data.* and eval.*"):
        finetune_run(run_dir, ["train.max_steps=3"], device="cpu", progress=False)


def _capture_encoder_input(classifier: Classifier) -> list[Tokens]:
    seen: list[Tokens] = []
    forward = classifier.backbone.encoder.forward

    def spy(tokens, keep=None):
        seen.append(tokens)
        return forward(tokens, keep=keep)

    classifier.backbone.encoder.forward = spy
    return seen


@pytest.mark.parametrize("mode", ["token", "attention"])
def test_regularized_masking_masks_the_asked_share_only_while_training(run_dir, mode):
    backbone = load_encoder(run_dir)
    classifier = Classifier(backbone, 2, "mean", backbone.dim, mask_ratio=0.4, mask_mode=mode)
    seen = _capture_encoder_input(classifier)
    recipe = recipe_from_dict(read_run_config(run_dir), "run")
    train, _, _ = load_datasets(recipe)
    x, _ = default_collate([train[i] for i in range(8)])
    tokens = backbone.tokenizer(x)
    n = tokens.x.shape[1]
    classifier(x, torch.Generator().manual_seed(0))
    masked_input = seen[-1]
    if mode == "token":
        is_mask = (masked_input.x == classifier.mask_token).all(-1)  # [B, N]
        assert (is_mask.sum(1) == round(0.4 * n)).all()
        torch.testing.assert_close(masked_input.x[~is_mask], tokens.x[~is_mask])
        assert masked_input.pad_mask is None
    else:
        assert classifier.mask_token is None
        torch.testing.assert_close(masked_input.x, tokens.x)
        assert (masked_input.pad_mask.sum(1) == round(0.4 * n)).all()
    # different generators mask different tokens; no generator (evaluation): no masking
    classifier(x, torch.Generator().manual_seed(1))
    assert not torch.equal(seen[-1].x if mode == "token" else seen[-1].pad_mask,
                           masked_input.x if mode == "token" else masked_input.pad_mask)
    classifier(x)
    assert seen[-1].pad_mask is None
    torch.testing.assert_close(seen[-1].x, tokens.x)


def test_regularized_masking_needs_a_tokenizer():
    backbone = nn.Module()
    backbone.tokenizer = nn.Identity()
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        Classifier(backbone, 2, "mean", 8, mask_ratio=0.1)  # type: ignore[arg-type]


def test_eval_overrides_change_the_split_not_the_encoder(run_dir):
    result = evaluate_run(run_dir, device="cpu", overrides=["data.test_fraction=0.5"])
    assert result["n_test"] == 285 and result["n_train"] == 284
    with pytest.raises(ConfigError, match="only data.* and eval.*"):
        evaluate_run(run_dir, device="cpu", overrides=["model.encoder.depth=3"])


def test_cli_finetune_json(run_dir, capsys):
    assert main(["finetune", str(run_dir), "finetune.max_steps=3", "--json", "--no-progress",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 3 and 0 <= result["finetune"] <= 1


def test_cli_overrides_may_follow_the_options(tmp_path, tiny_recipe, capsys):
    recipe = tiny_recipe()
    assert main(["pretrain", str(recipe), "--out", str(tmp_path / "r"), "train.max_steps=2"]) == 0
    steps = [json.loads(line)["step"] for line in (tmp_path / "r" / "metrics.jsonl").open()]
    assert steps == [1, 2]
    with pytest.raises(SystemExit):
        main(["pretrain", str(recipe), "--out", str(tmp_path / "s"), "--bogus"])


def test_base_recipe_component_of_another_name_is_replaced_whole():
    base = {"model": {"encoder": {"name": "audio.audiontt2020", "d": 512, "num_blocks": 3}}}
    same = deep_merge(base, {"model": {"encoder": {"d": 1024}}})
    assert same["model"]["encoder"] == {"name": "audio.audiontt2020", "d": 1024, "num_blocks": 3}
    other = deep_merge(base, {"model": {"encoder": {"name": "audio.audiontt2022", "d": 3072}}})
    assert other["model"]["encoder"] == {"name": "audio.audiontt2022", "d": 3072}


class _Aug:
    def __init__(self, on_device: bool) -> None:
        self.on_device = on_device


def test_device_augmentations_must_come_last():
    host, dev = _Aug(False), _Aug(True)
    assert split_augmentations([host, dev, dev]) == ([host], [dev, dev])
    assert split_augmentations([host]) == ([host], [])
    with pytest.raises(ConfigError, match="must come after"):
        split_augmentations([dev, host])


def test_audio_jepa_pretrains_evaluates_and_finetunes_with_flattened_patches(tmp_path):
    """The A-JEPA path on the audio plugin's synthetic sounds: log-mel frontend, patch tokenizer,
    curriculum masker fed the batch position, flatten pooling sized from the tokenizer's layout."""
    raw = {
        "modality": "audio", "synthetic": True,
        "model": {"frontend": {"name": "audio.logmel"},
                  "tokenizer": {"name": "audio.patches", "dim": 32, "patch": 16},
                  "encoder": {"name": "transformer", "depth": 1, "num_heads": 2},
                  "predictor": {"name": "jepa", "dim": 32, "depth": 1, "num_heads": 2}},
        "masker": {"name": "audio.curriculum", "block": {"min_keep": 4},
                   "time_frequency": {"min_keep": 4}},
        "objective": {"name": "jepa", "loss": "mse"},
        "train": {"max_steps": 3, "batch_size": 16, "device": "cpu", "progress": False,
                  "log_every": 1, "monitor_every": 1000, "checkpoint_every": 1000},
        "eval": {"pooling": "flatten", "max_train": 100},
        "finetune": {"max_steps": 2, "batch_size": 16, "pooling": "flatten", "mask_ratio": 0.1},
    }
    recipe = tmp_path / "ajepa.yaml"
    recipe.write_text(json.dumps(raw))
    run = pretrain(recipe, [], tmp_path / "run")
    probes = evaluate_run(run, device="cpu")
    assert probes["n_train"] == 400 and probes["n_test"] == 100
    result = finetune_run(run, [], device="cpu", progress=False)
    assert 0 <= result["finetune"] <= 1 and result["steps"] == 2
    encoder = load_encoder(run)
    latents = encoder(torch.zeros(2, 15200))  # 0.95 s at 16 kHz -> 64 x 96 log-mel -> 4 x 6 patches
    assert latents.shape == (2, 24, 32)
