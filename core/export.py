"""Share and deploy a trained encoder: a Hugging Face Hub folder, ONNX, and `push`.

* `hf`: `model.safetensors` (the encoder's weights), `config.json` (modality, architecture,
  preprocessing, pooling, polyjepa version, the resolved recipe) and a `README.md` model card
  (recipe, paper, data, the run's evaluation tables, licence, how to load). `load_encoder`,
  `embed` and `Featurizer` read the folder, or a Hub repository `org/name` through
  `huggingface_hub` (`read_hf`).
* `onnx`: the encoder and its pooling, `[B, ...] -> [B, F]`, the batch dimension dynamic, traced
  on two samples of the run's data and checked against PyTorch with `onnxruntime`.

    polyjepa export runs/rows --format hf --out exported/rows
    polyjepa push runs/rows my-org/rows-encoder        # needs a network and a token
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polyjepa.errors import CheckpointError, ConfigError, PolyjepaError
from polyjepa.extras import require
from polyjepa.paths import check_output_folder, read_json_dict, write_atomic

HF_FORMAT = "polyjepa-hf/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
ONNX_FILE = "encoder.onnx"
FORMATS = ("hf", "onnx")
ONNX_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| on the check batch
OUTPUT = "pooled_embedding"  # the ONNX graph's output (the inputs: input_KEY, or input)


def export_run(run: str | Path, fmt: str, out: str | Path,
               overrides: list[str] | None = None) -> Path:
    """Write run `run` (a run directory or its `encoder.pt`) as `fmt` (`hf` or `onnx`) into the
    folder `out`; returns it. Written into a temporary folder beside `out`, then moved: a
    failed export leaves nothing behind.

    Raises:
        ConfigError: an unknown format, or `out` already holds files.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    check_output_folder(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} already holds files; choose an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (write_hf if fmt == "hf" else write_onnx)(Path(run), staging, overrides or [])
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------------------ hf


def write_hf(run: Path, out: Path, overrides: list[str]) -> None:
    """The Hub layout of a run's encoder in `out` (see the module docstring)."""
    safetensors = require("safetensors.torch", "hub", "export --format hf")
    from polyjepa import __version__
    from polyjepa.hub import read_export

    if overrides:
        raise ConfigError("export --format hf takes no overrides: the folder is the encoder")
    blob, file = read_export(run)
    config = blob["config"]
    model = config.get("model", {})
    pooling = config.get("eval", {}).get("pooling", "mean")
    description = {
        "format": HF_FORMAT, "polyjepa_version": __version__,
        "modality": config.get("modality"), "pooling": pooling,
        "architecture": {k: model.get(k) for k in ("frontend", "tokenizer", "encoder")
                         if model.get(k) is not None},
        "preprocessing": blob["meta"], "config": config,
    }
    try:
        text = json.dumps(description, indent=1)
    except TypeError as exc:
        raise CheckpointError(f"{file}: its data description is not plain JSON ({exc})") from None
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in blob["state_dict"].items()}
    safetensors.save_file(weights, str(out / WEIGHTS), metadata={"format": HF_FORMAT})
    write_atomic(out / CONFIG, text.encode())
    write_atomic(out / CARD, model_card(run, file, description).encode())


def model_card(run: Path, file: Path, description: dict) -> str:
    """The `README.md` of an exported folder: Hub metadata, then what the encoder is and how it
    scored (the run's `eval.txt` when it was evaluated), its licence and how to load it."""
    from polyjepa.config import list_recipes, read_recipe

    run_dir = file.parent
    info = read_json_dict(run_dir / "run.json")
    config = description["config"]
    recipe = str(info.get("recipe", "?"))
    paper = config.get("paper") or (read_recipe(list_recipes()[recipe]).get("paper")
                                    if recipe in list_recipes() else None)
    data = config.get("data", {}) or {}
    evaluation = run_dir / "eval.txt"
    where = ("the modality's synthetic set" if config.get("synthetic")
             else data.get("path") or "the recipe's built-in data")
    lines = [
        "---", "library_name: polyjepa", "license: mit",
        f"tags: [self-supervised-learning, jepa, {description['modality']}]", "---", "",
        f"# {run_dir.name}: a polyjepa {description['modality']} encoder", "",
        f"Pretrained with the `{recipe}` recipe"
        + (f" ({paper})" if paper else "") + f" by polyjepa {description['polyjepa_version']}"
        + (f", commit {info['commit']}" if info.get("commit") else "") + ".", "",
        "## Data", "",
        f"- data: `{where}`",
        f"- training samples: {info.get('train_samples', '?')}, steps: {info.get('steps', '?')}"
        + (f", selected step: {info['selection']['selected']}"
           if isinstance(info.get("selection"), dict) and "selected" in info["selection"] else ""),
        f"- pooling: `{description['pooling']}`; the preprocessing fitted on the training data is "
        f"in `{CONFIG}` (`preprocessing`)", "",
        "## Evaluation", "",
    ]
    if evaluation.is_file():
        lines += ["Frozen-encoder probes beside random initialisations and raw features (from "
                  "`polyjepa eval`):", "", "```", evaluation.read_text().rstrip(), "```"]
    else:
        lines.append("Not evaluated when exported (`polyjepa eval RUN` before exporting adds "
                     "the tables here).")
    lines += [
        "", "## Use", "", "```python", "import polyjepa",
        "encoder = polyjepa.load_encoder(\"THIS_FOLDER_OR_ORG/NAME\")  # nn.Module, eval mode",
        "out = polyjepa.embed(\"THIS_FOLDER_OR_ORG/NAME\", my_data)   # read as in training",
        "```", "", "## Licence", "",
        "The weights are released under the MIT licence of polyjepa's code; the training data "
        "keeps its own licence.", ""]
    return "\n".join(lines)


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def looks_like_repo(text: str) -> bool:
    """`org/name`: a Hub repository id, not a local path."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not Path(text).exists() and not text.startswith(".")


def read_hf(path: str | Path) -> tuple[dict, Path]:
    """An export blob `{"format", "config", "meta", "state_dict"}` from an exported folder, or
    from the Hub repository `org/name` (downloaded by `huggingface_hub` into its cache).

    Raises:
        CheckpointError: not an exported folder, a repository that cannot be fetched (offline,
            private without a token, absent), or a folder of another format.
    """
    from polyjepa.hub import FORMAT

    folder = Path(path)
    if not folder.exists() and looks_like_repo(str(path)):
        hub = require("huggingface_hub", "hub", f"loading {path} from the Hub")
        try:
            folder = Path(hub.snapshot_download(str(path), allow_patterns=[CONFIG, WEIGHTS,
                                                                           CARD]))
        except Exception as exc:  # noqa: BLE001 (network, auth and not-found errors alike)
            raise CheckpointError(f"{path}: not a local folder, and the Hub repository could not "
                                  f"be fetched ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not is_hf_folder(folder):
        raise CheckpointError(f"{path}: not an exported polyjepa folder ({CONFIG} and {WEIGHTS})")
    safetensors = require("safetensors.torch", "hub", f"reading {folder}")
    description = json.loads((folder / CONFIG).read_text())
    if description.get("format") != HF_FORMAT:
        raise CheckpointError(f"{folder / CONFIG}: not a polyjepa export (format "
                              f"{description.get('format')!r})")
    state = safetensors.load_file(str(folder / WEIGHTS))
    return {"format": FORMAT, "config": description["config"],
            "meta": description["preprocessing"], "state_dict": state}, folder / WEIGHTS


def push(run: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Export `run` in the Hub layout and upload it to `repo_id` (created when absent); returns
    the repository's address.

    Raises:
        PolyjepaError: no network, no token, or the Hub refused (one line, the Hub's reason).
    """
    hub = require("huggingface_hub", "hub", "push")
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_run(run, "hf", Path(tmp) / "export")
        try:
            api = hub.HfApi(token=token)
            api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                              commit_message="polyjepa export")
        except Exception as exc:  # noqa: BLE001 (network, auth and permission errors alike)
            raise PolyjepaError(
                f"push {repo_id}: the Hub refused or could not be reached ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); log in with `hf auth "
                "login` or set HF_TOKEN, and check the network") from None
    return f"https://huggingface.co/{repo_id}"


# ---------------------------------------------------------------------------------------- onnx


class PooledEncoder(nn.Module):
    """The encoder and its pooling as one module of plain tensors: `forward(*inputs)` takes the
    raw input's tensors in `keys` order (one tensor when the input is one) and returns the
    pooled embeddings `[B, F]`."""

    def __init__(self, backbone: nn.Module, pooling: str, keys: list[str] | None) -> None:
        super().__init__()
        self.backbone, self.pooling, self.keys = backbone, pooling, keys

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x: Any = dict(zip(self.keys, inputs, strict=True)) if self.keys else inputs[0]
        return self.backbone.embed(x, self.pooling)


def write_onnx(run: Path, out: Path, overrides: list[str]) -> None:
    """`out/encoder.onnx` (inputs named by the raw input's keys, batch dimension dynamic) and
    `out/onnx.json` (inputs, output, pooling, the check's maximum difference).

    Raises:
        PolyjepaError: the export failed (names the modality and the exporter's reason), or
            onnxruntime's embeddings differ from PyTorch's by more than `ONNX_TOLERANCE`.
    """
    require("onnx", "onnx", "export --format onnx")
    runtime = require("onnxruntime", "onnx", "export --format onnx")
    from polyjepa.build import load_splits
    from polyjepa.embedding import EncoderRun

    loaded = EncoderRun.load(run, "cpu", overrides)
    splits = load_splits(loaded.recipe) if not overrides else None
    dataset = splits.test if splits is not None else loaded.dataset(
        loaded.recipe.cfg.data.path)
    traced, checked = _samples(dataset, 2), _samples(dataset, 3)  # the batch size is dynamic
    keys = sorted(traced) if isinstance(traced, dict) else None
    names = [f"input_{k}" for k in keys] if keys else ["input"]
    inputs = tuple(traced[k] for k in keys) if keys else (traced,)
    pooling = loaded.recipe.cfg.eval.pooling
    module = PooledEncoder(loaded.backbone, pooling, keys).eval()
    path = out / ONNX_FILE
    try:
        with warnings.catch_warnings():  # the tracer's notes on shape checks it keeps constant
            warnings.simplefilter("ignore")
            batch = torch.export.Dim("batch", min=1, max=1 << 20)
            torch.onnx.export(module, inputs, str(path), input_names=names,
                              output_names=[OUTPUT], dynamo=True, verbose=False,
                              dynamic_shapes=(tuple({0: batch} for _ in inputs),),
                              external_data=False)
        session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        check = tuple(checked[k] for k in keys) if keys else (checked,)
        got = session.run([OUTPUT], {n: t.numpy() for n, t in zip(names, check, strict=True)}
                          )[0]
    except Exception as exc:  # noqa: BLE001 (the exporter and the runtime raise many kinds)
        raise PolyjepaError(f"export --format onnx: the {loaded.recipe.cfg.modality} encoder did "
                            f"not export ({type(exc).__name__}: {_reason(exc)})") from None
    with torch.no_grad():
        expected = module(*check).numpy()
    difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else math.inf
    if not difference <= ONNX_TOLERANCE:
        raise PolyjepaError(f"export --format onnx: onnxruntime's embeddings differ from "
                            f"PyTorch's by {difference:.2e} (> {ONNX_TOLERANCE}); not exported")
    write_atomic(out / "onnx.json", json.dumps({
        "inputs": {n: {"shape": ["batch", *t.shape[1:]], "dtype": str(t.dtype).removeprefix(
            "torch.")} for n, t in zip(names, inputs, strict=True)},
        "output": {OUTPUT: ["batch", int(expected.shape[1])]}, "pooling": pooling,
        "max_abs_difference": difference}, indent=1).encode())


def _reason(exc: Exception) -> str:
    """The line of an exporter's long message that says what failed."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("<class ")]
    return (causes[-1] if causes else lines[0] if lines else "")[:300]


def _samples(dataset: Any, n: int) -> Any:
    """The raw input of a batch of the first `n` samples of `dataset` (fewer when it is smaller),
    on the CPU."""
    from torch.utils.data import DataLoader, Subset

    from polyjepa.data import eval_collate

    if len(dataset) == 0:
        raise PolyjepaError("export --format onnx traces the encoder on samples of the run's "
                            "data, and its test split is empty")
    subset = Subset(dataset, range(min(n, len(dataset))))
    return next(iter(DataLoader(subset, batch_size=n, collate_fn=eval_collate))).x
