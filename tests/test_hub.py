"""Toolkens as Hub artifacts: save_pretrained / from_pretrained / push_to_hub, a model card, the base model recorded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard

from toolken_agent.base_model import describe_model
from toolken_agent.checkpoint import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from toolken_agent.errors import CheckpointError
from toolken_agent.model import FrozenLM, load_model
from toolken_agent.store import EMBEDDED_GGUF_SHA256
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import make_toolset

from conftest import CLI_TOOLS

IDS = torch.tensor([[3, 14, 15, 92, 65]])
REPO = "someone/toolkens-test"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def toolkens(tiny_lm, small_toolset):
    """Toolkens on the tiny model, moved off their priors, under a Hub-like model id."""
    lm = FrozenLM(model=tiny_lm.model, tokenizer=tiny_lm.tokenizer, spec="someone/tiny-llama", name="tiny-llama")
    made = Toolkens.from_priors(lm, small_toolset, prior="lm-head")
    with torch.no_grad():
        made.head.weight.add_(torch.randn_like(made.head.weight))
    return made


def fake_hub_cache(root: Path, repo: str, checkpoint: Path) -> Path:
    """The snapshot layout huggingface_hub keeps: models--owner--name/{refs/main, snapshots/<commit>/files}."""
    storage = root / f"models--{repo.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(COMMIT)
    shutil.copytree(checkpoint, storage / "snapshots" / COMMIT)
    return root


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch):
    """An empty local Hub cache, the Hub unreachable (HF_HUB_OFFLINE=1), for this process."""
    root = tmp_path / "hf-cache"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))  # read once, at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return root


def test_save_pretrained_then_from_pretrained_gives_identical_logits(toolkens, small_toolset, tmp_path):
    path = tmp_path / "ckpt"
    assert toolkens.save_pretrained(path) is None
    assert sorted(p.name for p in path.iterdir()) == sorted([CARD_FILE, CONFIG_FILE, WEIGHTS_FILE])  # no config.json
    loaded = Toolkens.from_pretrained(path, tools=small_toolset, lm=toolkens.lm)
    assert torch.equal(loaded.logits(IDS), toolkens.logits(IDS))
    by_ref = Toolkens.from_pretrained(str(path), tools=[spec for spec in small_toolset], lm=toolkens.lm)  # a list of tools
    assert torch.equal(by_ref.logits(IDS), toolkens.logits(IDS))


def test_from_pretrained_without_tools_is_refused(toolkens, tmp_path):
    path = toolkens.save_pretrained(tmp_path / "ckpt") or tmp_path / "ckpt"
    with pytest.raises(CheckpointError, match="holds weights, not tools"):
        Toolkens.from_pretrained(path, lm=toolkens.lm)


def test_save_pretrained_refuses_a_directory_that_is_not_a_checkpoint_and_leaves_it_whole(toolkens, tmp_path):
    model_dir = tmp_path / "a-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")  # the mixin's own save_pretrained deleted this first
    with pytest.raises(CheckpointError, match="holds no toolken checkpoint"):
        toolkens.save_pretrained(model_dir)
    assert (model_dir / "config.json").read_text() == "{}"


def test_a_repo_id_loads_from_the_local_hub_cache_offline(toolkens, small_toolset, tmp_path, offline_cache):
    toolkens.save_pretrained(tmp_path / "ckpt")
    fake_hub_cache(offline_cache, REPO, tmp_path / "ckpt")
    loaded = Toolkens.from_pretrained(REPO, tools=small_toolset, lm=toolkens.lm)
    assert torch.equal(loaded.logits(IDS), toolkens.logits(IDS))


def test_a_repo_id_not_in_the_cache_offline_is_a_one_line_error(small_toolset, tiny_lm, offline_cache):
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        Toolkens.from_pretrained("someone/not-cached", tools=small_toolset, lm=tiny_lm)


def test_chat_and_langchain_take_a_repo_id_from_the_cache_offline(tmp_path, tiny_model_dir, small_toolset):
    """``--toolkens owner/name`` and ``ChatToolken(toolkens="owner/name")``, in a fresh process with HF_HUB_* set."""
    lm = load_model(str(tiny_model_dir), dtype="float32")
    Toolkens.from_priors(lm, make_toolset(small_toolset.specs)).save_pretrained(tmp_path / "ckpt")
    cache = fake_hub_cache(tmp_path / "hf-cache", REPO, tmp_path / "ckpt")
    tools = tmp_path / "tools.py"
    tools.write_text("from conftest import Add, WeatherNow\nTOOLS = [Add, WeatherNow]\n")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parent.parent)])}
    chat = subprocess.run([sys.executable, "-m", "toolken_agent.cli", "chat", "--toolkens", REPO, "--tools", str(tools),
                           "--model", str(tiny_model_dir), "--dtype", "float32", "--max-tokens", "2"],
                          input="hello\n", capture_output=True, text=True, env=env, timeout=300)
    assert chat.returncode == 0, chat.stderr
    code = (f"from toolken_agent import ChatToolken; from conftest import Add, WeatherNow; "
            f"from toolken_agent.integrations.langchain import _runtime; "
            f"llm = ChatToolken(model={str(tiny_model_dir)!r}, toolkens={REPO!r}, dtype='float32', max_tokens=2); "
            f"print(llm.bind_tools([Add, WeatherNow]).invoke('hello').response_metadata['finish_reason']); "
            f"print(_runtime({str(tiny_model_dir)!r}, 'float32', {REPO!r}).trained[1].tool_names)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['add', 'weather_now']"
    missing = subprocess.run([sys.executable, "-m", "toolken_agent.cli", "chat", "--toolkens", "someone/not-cached",
                              "--tools", str(tools), "--model", str(tiny_model_dir)],
                             input="", capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 2 and "not in the local Hugging Face cache" in missing.stderr
    assert "Traceback" not in missing.stderr


class RecordingHfApi:
    """HfApi as push_to_hub uses it; upload_folder keeps a copy of what it was given."""

    uploads: list[dict] = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, folder_path, repo_type, **kwargs):
        kept = Path(self.keep_in) / "uploaded"
        shutil.copytree(folder_path, kept)
        self.uploads.append({"repo_id": repo_id, "repo_type": repo_type, "folder": kept})
        return f"https://huggingface.co/{repo_id}/commit/{COMMIT}"


def test_push_to_hub_uploads_the_checkpoint_and_its_card(toolkens, small_toolset, tmp_path, monkeypatch):
    RecordingHfApi.uploads = []
    RecordingHfApi.keep_in = str(tmp_path)
    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", RecordingHfApi)
    url = toolkens.push_to_hub(REPO)
    assert url.endswith(COMMIT)
    [upload] = RecordingHfApi.uploads
    assert upload["repo_id"] == REPO and upload["repo_type"] == "model"
    folder = upload["folder"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([CARD_FILE, CONFIG_FILE, WEIGHTS_FILE])
    loaded = Toolkens.from_pretrained(folder, tools=small_toolset, lm=toolkens.lm)
    assert torch.equal(loaded.logits(IDS), toolkens.logits(IDS))
    card = (folder / CARD_FILE).read_text()
    assert f'Toolkens.from_pretrained("{REPO}"' in card and f"--toolkens {REPO}" in card


def test_the_model_card_names_base_model_tools_data_figures_and_how_to_load(tiny_lm, small_toolset, tmp_path):
    from toolken_agent.augment import example_conversations
    from toolken_agent.training import TrainConfig

    lm = FrozenLM(model=tiny_lm.model, tokenizer=tiny_lm.tokenizer, spec="someone/tiny-llama", name="tiny-llama")
    conversations = example_conversations(small_toolset) * 4  # enough for a held-out share
    trained, report = Toolkens.fit(lm, small_toolset, conversations, config=TrainConfig(epochs=2), lambdas=None)
    path = trained.save(tmp_path / "ckpt")
    card = ModelCard.load(path / CARD_FILE)
    assert card.data.library_name == "toolken-agent"
    assert card.data.base_model == "someone/tiny-llama"
    assert {"toolken-agent", "tool-calling"} <= set(card.data.tags)
    text = card.text
    assert "| `add` | Add two numbers and return their sum. |" in text
    assert "| `weather_now` | Get the current weather for a city. |" in text
    assert f"{report.examples} conversations trained on, {report.heldout_examples} held out" in text
    assert f"| trained | {report.heldout['accuracy']:.3f} |" in text
    assert 'Toolkens.from_pretrained("ckpt", tools=' in text and "toolken-agent chat --toolkens ckpt" in text


def test_the_base_model_is_recorded_by_what_it_is(tmp_path, tiny_model_dir):
    embedded = describe_model(None)
    assert embedded["kind"] == "embedded" and embedded["sha256"] == EMBEDDED_GGUF_SHA256
    assert embedded["name"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and embedded["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    gguf = tmp_path / "my-model.Q8_0.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)))
    import hashlib

    assert describe_model(str(gguf)) == {"kind": "gguf", "name": "my-model.Q8_0.gguf", "path": str(gguf.resolve()),
                                         "sha256": hashlib.sha256(gguf.read_bytes()).hexdigest(), "hub_id": ""}
    assert describe_model(str(tiny_model_dir))["path"] == str(tiny_model_dir.resolve())
    assert describe_model("org/model") == {"kind": "hub", "name": "org/model", "path": "", "sha256": "", "hub_id": "org/model"}


def test_without_a_model_the_checkpoint_loads_the_model_it_records(tmp_path, tiny_model_dir, small_toolset):
    lm = load_model(str(tiny_model_dir), dtype="float32")
    path = Toolkens.from_priors(lm, small_toolset).save(tmp_path / "ckpt")
    _, config = load_checkpoint(path)
    assert config.model == str(tiny_model_dir.resolve()) and config.base_model["kind"] == "directory"
    loaded = Toolkens.load(path, small_toolset, dtype="float32")
    assert loaded.lm.fingerprint == lm.fingerprint and loaded.lm.spec == str(tiny_model_dir.resolve())


def test_a_recorded_model_missing_here_is_refused_naming_it(tmp_path, tiny_model_dir, small_toolset):
    moved = tmp_path / "my-base"
    shutil.copytree(tiny_model_dir, moved)
    lm = load_model(str(moved), dtype="float32")
    path = Toolkens.from_priors(lm, small_toolset).save(tmp_path / "ckpt")
    shutil.rmtree(moved)
    with pytest.raises(CheckpointError, match=r"was trained on my-base, which is not at .*my-base here: pass --model"):
        Toolkens.load(path, small_toolset, dtype="float32")


def test_cli_chat_and_eval_without_model_use_the_checkpoints_model(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from conftest import cli_conversation
    from toolken_agent.cli import app

    tools = tmp_path / "mytools.py"
    tools.write_text(CLI_TOOLS)
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(cli_conversation(i)) for i in range(12)) + "\n")
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), "--model", str(tiny_model_dir),
                                  "--out", str(tmp_path / "ckpt"), "--epochs", "1", "--lambda", "0.01", "--dtype", "float32"])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["eval", "--toolkens", str(tmp_path / "ckpt"), "--tools", str(tools), "--data", str(data),
                                 "--limit", "2", "--max-tokens", "2", "--dtype", "float32"])  # no --model
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["examples"] == 2


def test_chat_toolken_without_a_model_loads_the_checkpoints_model(tmp_path, tiny_model_dir, small_toolset):
    from langchain_core.messages import AIMessage

    from toolken_agent import ChatToolken

    lm = load_model(str(tiny_model_dir), dtype="float32")
    path = Toolkens.from_priors(lm, small_toolset).save(tmp_path / "ckpt")
    llm = ChatToolken(toolkens=str(path), dtype="float32", max_tokens=2)  # no model=: not the embedded default
    reply = llm.invoke("Hello")
    assert isinstance(reply, AIMessage)
    assert reply.response_metadata["model_name"] == lm.name
    assert llm._get_ls_params()["ls_model_name"] == lm.name  # known before the model loads, and the same
