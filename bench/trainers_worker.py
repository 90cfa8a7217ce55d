"""The worker of bench/trainers.py, run with the trainers' own virtualenv (torch, TRL, FastChat).

    bench/.venv-trainers/bin/python bench/trainers_worker.py PLAN.json RESULTS.jsonl

Reads the cells of PLAN.json and appends one JSON line per cell to RESULTS.jsonl: `{"start": id}`
before it, then `{"id", "result", "seconds", "rows"}`. Cells that already have a result there are
skipped, so the driver can start it again after a crash. Every cell's exception is caught and
written as one line (its type and message); the traceback goes to stdout (the driver's log).
Never imported by the project's own code: this file alone imports torch and TRL.
"""

import sys
from pathlib import Path

# Python puts this file's folder first on sys.path, and bench/queue.py there would shadow the
# standard library's `queue` (which torch and datasets import): take the folder out.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from importlib.metadata import version  # noqa: E402
from typing import Any  # noqa: E402

SPECIALS = {"pad": "<pad>", "eos": "</s>", "bos": "<s>", "unk": "<unk>"}
# A small chat template: each message as `<|role|>content</s>`, and the assistant's header as the
# generation prompt. Rendering the prompt with it is a prefix of rendering prompt + response,
# which TRL's trainers rely on to find where the completion starts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '</s>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
PACKAGES = (
    "torch",
    "trl",
    "transformers",
    "datasets",
    "tokenizers",
    "accelerate",
    "fschat",
    "pandas",
    "pyarrow",
    "scikit-learn",
)


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in strings_in(item)]
    return []


def read_rows(path: str) -> list[dict[str, Any]]:
    """The file's rows as plain Python objects (JSON Lines, or Parquet through pyarrow)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def build_tokenizer(paths: list[str], folder: Path) -> Any:
    """A byte-level BPE trained on the exports' texts, as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts: list[str] = []
    for path in paths:
        try:
            for row in read_rows(path):
                texts.extend(strings_in(row))
        except Exception:  # noqa: S112 - a file that does not read is the cells' to report
            continue
    texts.append("<|system|><|user|><|assistant|>\n\nHuman: \n\nAssistant: ")
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIALS["unk"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=list(SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=SPECIALS["pad"],
        eos_token=SPECIALS["eos"],
        bos_token=SPECIALS["bos"],
        unk_token=SPECIALS["unk"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder / "tokenizer")
    return fast


def model_config(tokenizer: Any, **extra: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **extra,
    )


def load(path: str, file_format: str) -> Any:
    """As TRL's docs load a dataset file."""
    from datasets import load_dataset

    kind = "parquet" if file_format == "parquet" else "json"
    return load_dataset(kind, data_files=path, split="train")


def common_args(output_dir: str) -> dict[str, Any]:
    return {
        "output_dir": output_dir,
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1e-4,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "seed": 0,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


TRAINERS = ("dpo", "reward", "kto")
TEXT_COLUMNS = ("prompt", "chosen", "rejected", "completion")


def json_text_note(dataset: Any) -> str:
    """A trainer takes a column of JSON text (Parquet's form of a column mixing strings and
    messages) as plain text and trains on it without a word: say so beside its `ok`."""
    notes = []
    for name in TEXT_COLUMNS:
        if name not in dataset.column_names:
            continue
        values = [v for v in dataset[name] if isinstance(v, str)]
        encoded = 0
        for value in values:
            if value[:1] in ('"', "[", "{"):
                try:
                    json.loads(value)
                except ValueError:
                    continue
                encoded += 1
        if encoded:
            notes.append(f"{name} {encoded}/{len(dataset)}")
    return f" (but JSON text in {', '.join(notes)})" if notes else ""


def build_models(tokenizer: Any, folder: Path) -> dict[str, str]:
    """The tiny models, from a config, saved beside the tokenizer: TRL is given their folders, as
    its docs give it a model's name, so that DPO and KTO build their reference model from the
    same place."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(0)
    paths = {}
    for name, model in (
        ("causal-lm", AutoModelForCausalLM.from_config(model_config(tokenizer))),
        (
            "reward-model",
            AutoModelForSequenceClassification.from_config(model_config(tokenizer, num_labels=1)),
        ),
    ):
        path = folder / name
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths[name] = str(path)
    return paths


def train(trainer_name: str, dataset: Any, tokenizer: Any, models: dict[str, str]) -> str:
    import torch

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="trainer-") as output_dir:
        if trainer_name == "dpo":
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(
                model=models["causal-lm"],
                args=DPOConfig(**common_args(output_dir)),
                train_dataset=dataset,
                processing_class=tokenizer,
            )
        elif trainer_name == "reward":
            from trl import RewardConfig, RewardTrainer

            trainer = RewardTrainer(
                model=models["reward-model"],
                args=RewardConfig(**common_args(output_dir)),
                train_dataset=dataset,
                processing_class=tokenizer,
            )
        elif trainer_name == "kto":
            from trl import KTOConfig, KTOTrainer

            trainer = KTOTrainer(
                model=models["causal-lm"],
                args=KTOConfig(**common_args(output_dir)),
                train_dataset=dataset,
                processing_class=tokenizer,
            )
        else:
            raise ValueError(f"unknown trainer {trainer_name!r}")
        output = trainer.train()
    return f"ok: {output.global_step} steps, loss {output.training_loss:.4f}"


def elo(path: str, file_format: str, folder: Path, python: str) -> tuple[str, int]:
    """FastChat's own command for a clean battle file (a JSON array of battles): a JSON Lines
    or Parquet export's rows are written as one, unchanged."""
    if file_format == "json":  # the export is a JSON array already: FastChat reads it as it is
        battles = Path(path)
        rows = json.loads(battles.read_text(encoding="utf-8"))
    else:
        rows = read_rows(path)
        battles = folder / (Path(path).stem + "-battles.json")
        battles.write_text(json.dumps(rows, ensure_ascii=False))
    result = subprocess.run(
        [
            python,
            "-m",
            "fastchat.serve.monitor.elo_analysis",
            "--clean-battle-file",
            str(battles),
            "--num-bootstrap",
            "100",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(result.stdout[-3000:], result.stderr[-6000:], sep="\n", flush=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit {result.returncode}")
    median = result.stdout.split("# Median", 1)[-1]
    ratings = []
    for line in median.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            ratings.append(f"{parts[1]} {parts[2]}")
    return f"ok: Bradley-Terry {'; '.join(ratings)}", len(rows)


def load_only(dataset: Any) -> str:
    """Loads; names the columns `datasets` could give no type (its `Json` feature)."""
    untyped = [name for name, f in dataset.features.items() if type(f).__name__ == "Json"]
    columns = f"{len(dataset.features)} columns"
    if untyped:
        columns += f", untyped (Json): {', '.join(untyped)}"
    return f"ok: loads, {columns}"


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    results_path = Path(sys.argv[2])
    done: set[int] = set()
    if results_path.is_file():
        for line in results_path.read_text().splitlines():
            record = json.loads(line)
            if "result" in record:
                done.add(record["id"])
    results = results_path.open("a")

    def write(record: dict[str, Any]) -> None:
        results.write(json.dumps(record) + "\n")
        results.flush()
        os.fsync(results.fileno())

    import platform

    packages = []
    for name in PACKAGES:
        try:
            packages.append((name, version(name)))
        except Exception:
            packages.append((name, "not installed"))
    write({"versions": {"python": platform.python_version(), "packages": packages}})

    work = Path(plan["work"])
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = None
    models: dict[str, str] = {}
    setup_error = ""
    if any(cell["trainer"] in TRAINERS for cell in plan["cells"] if cell["id"] not in done):
        started = time.perf_counter()
        try:
            tokenizer = build_tokenizer(plan["texts"], work)
            models = build_models(tokenizer, work)
        except Exception as exc:
            traceback.print_exc()
            setup_error = f"the tokenizer or the models: {type(exc).__name__}: {exc}"
        write(
            {
                "setup": {
                    "seconds": round(time.perf_counter() - started, 2),
                    "vocabulary": len(tokenizer) if tokenizer is not None else None,
                    "error": setup_error,
                }
            }
        )
    for cell in plan["cells"]:
        if cell["id"] in done:
            continue
        write({"start": cell["id"]})
        label = f"{cell['project']} {cell['format']} {cell['variant']} {cell['file_format']}"
        print(f"=== cell {cell['id']}: {label} {cell['trainer']}", flush=True)
        started = time.perf_counter()
        rows = None
        try:
            if cell["trainer"] == "fastchat-elo":
                rows = len(read_rows(cell["path"])) if cell["file_format"] != "json" else None
                result, rows = elo(cell["path"], cell["file_format"], work, sys.executable)
            else:
                dataset = load(cell["path"], cell["file_format"])
                rows = len(dataset)
                if cell["trainer"] == "load_dataset":
                    result = load_only(dataset)
                else:
                    if setup_error:
                        raise RuntimeError(setup_error)
                    result = train(cell["trainer"], dataset, tokenizer, models)
                result += json_text_note(dataset)
        except Exception as exc:
            traceback.print_exc()
            sys.stdout.flush()
            message = " ".join(str(exc).split())
            result = f"{type(exc).__name__}: {message}"
        print(f"--- {result}", flush=True)
        write(
            {
                "id": cell["id"],
                "result": result,
                "seconds": round(time.perf_counter() - started, 2),
                "rows": rows,
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
