"""Safe by default: safe YAML, weights-only checkpoints, no pickle of user files, services on
127.0.0.1, no downloads at run time, paths from YAML resolved and checked.

The source checks parse every module of the package (and benchmarks/) with `ast`, so a new
`yaml.load(...)` or `torch.load(...)` anywhere fails here until it is made safe; the behaviour
checks run the real code paths.
"""

from __future__ import annotations

import ast
import os
import re
import socket
import types
from pathlib import Path

import pytest
import yaml
from helpers import REPO, run_fer_search

from fer_search.errors import UserError

SOURCES = sorted(
    [*(REPO / "fer_search").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")],
    key=str,
)
# Text that means unpickling, unsafe YAML or a download, wherever it appears in the source.
FORBIDDEN = {
    r"\byaml\.(unsafe_load|full_load|load_all|unsafe_load_all|full_load_all)\b": "unsafe YAML",
    r"\b(Unsafe|Full)?Loader=yaml\.(Loader|UnsafeLoader|FullLoader)\b": "unsafe YAML loader",
    r"weights_only\s*=\s*False": "unpickling torch.load",
    r"allow_pickle\s*=\s*True": "unpickling np.load",
    r"\b(pickle|cPickle|cloudpickle|dill|joblib)\.(load|loads|Unpickler)\b": "pickle load",
    r"\b(read_pickle|torch\.hub\.load|load_state_dict_from_url|download_url_to_file)\b": "download",
    r"\b(urlretrieve|urlopen|requests\.(get|post)|httpx\.|wget\b)": "network access",
    r"\bdownload\s*=\s*True": "dataset download",
}


def calls(tree: ast.AST, module: str, name: str) -> list[ast.Call]:
    """Calls of `module.name(...)` (e.g. yaml.load, torch.load) in a parsed file."""
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == module
    ]


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"


# ---------------------------------------------------------------- the source
def test_the_source_never_unpickles_loads_unsafe_yaml_or_downloads():
    assert len(SOURCES) > 10
    found = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            for pattern, what in FORBIDDEN.items():
                if re.search(pattern, code):
                    found.append(f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_forbidden_patterns_catch_what_they_name():
    samples = [
        "data = yaml.unsafe_load(text)",
        "yaml.load(text, Loader=yaml.FullLoader)",
        "torch.load(path, weights_only=False)",
        "np.load(file, allow_pickle=True)",
        "state = pickle.loads(blob)",
        "torch.hub.load('pytorch/vision', 'resnet101')",
        "urllib.request.urlretrieve(url, path)",
        "datasets.FER2013(root, download=True)",
    ]
    for sample in samples:
        assert any(re.search(pattern, sample) for pattern in FORBIDDEN), sample


def test_every_yaml_load_uses_a_safe_loader():
    import importlib

    seen = 0
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for call in calls(tree, "yaml", "load"):
            seen += 1
            loader = keyword(call, "Loader")
            if isinstance(loader, ast.Attribute):  # yaml.SafeLoader / yaml.CSafeLoader
                assert loader.attr in ("SafeLoader", "CSafeLoader"), where(path, call)
                continue
            assert isinstance(loader, ast.Name), f"{where(path, call)}: yaml.load without Loader="
            name = path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
            cls = getattr(importlib.import_module(name), loader.id)
            assert issubclass(cls, yaml.SafeLoader), f"{where(path, call)}: {cls} is not safe"
    assert seen >= 1  # the search-space reader (a SafeLoader that refuses duplicate keys)


def test_every_torch_load_is_weights_only():
    seen = 0
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for call in calls(tree, "torch", "load"):
            seen += 1
            value = keyword(call, "weights_only")
            assert isinstance(value, ast.Constant) and value.value is True, (
                f"{where(path, call)}: torch.load without weights_only=True"
            )
    assert seen >= 2  # engine.load_checkpoint and the ImageNet weights loader


# ---------------------------------------------------------------- checkpoints
class _Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_malicious_pickle_checkpoint_is_refused_with_one_line(tmp_path, command):
    import torch

    from fer_search.engine import CHECKPOINT_FORMAT

    marker, evil = tmp_path / "pwned", tmp_path / "best.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "state_dict": _Payload(marker)}, evil)
    image = tmp_path / "face.png"
    image.write_bytes(b"")  # never reached
    args = ["--data", "demo"] if command == "evaluate" else [str(image)]
    proc = run_fer_search(command, "--checkpoint", str(evil), *args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(evil) in lines[0] and "cannot be read safely" in lines[0]
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # control: the file really runs code when unpickled
    assert marker.exists()


# ---------------------------------------------------------------- services
@pytest.fixture()
def restore_environ():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_a_local_ray_binds_its_dashboard_to_localhost(monkeypatch, restore_environ):
    ray = pytest.importorskip("ray")
    from fer_search.tuning.cluster import start_ray

    seen: list[dict] = []

    def fake_init(**kwargs):
        seen.append(kwargs)
        return types.SimpleNamespace(dashboard_url=None)

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    start_ray(None, 2, None)
    assert len(seen) == 1 and seen[0]["dashboard_host"] == "127.0.0.1"


def test_tensorboard_instructions_bind_localhost():
    texts = {p: p.read_text() for p in [*SOURCES, *REPO.glob("*.md"), *REPO.glob("cluster/*.md")]}
    commands = [
        (path, line)
        for path, text in texts.items()
        for line in text.splitlines()
        if "tensorboard --logdir" in line
    ]
    assert any(path.name == "commands.py" for path, _ in commands)  # printed after a search
    assert any(path.name == "README.md" for path, _ in commands)
    for path, line in commands:
        assert "--host 127.0.0.1" in line or "--host localhost" in line, f"{path}: {line}"
    for path, text in texts.items():
        assert "--bind_all" not in text, path


# ---------------------------------------------------------------- downloads and paths
def test_pretrained_weights_are_never_downloaded(tmp_path, monkeypatch):
    import torch

    from fer_search.models import create_model

    def no_network(*args, **kwargs):
        raise AssertionError("fer-search tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))  # an empty hub cache
    try:
        with pytest.raises(UserError, match="nothing is downloaded"):
            create_model("mobilenet_v2", pretrained=True)
    finally:
        torch.hub.set_dir(old_hub)


def test_paths_in_a_space_are_resolved_and_checked(tmp_path, monkeypatch):
    from fer_search.space import load_space

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "mobilenet.pth").write_bytes(b"")
    space = tmp_path / "space.yaml"
    space.write_text(
        "params:\n  model: mobilenet_v2\n  pretrained: true\n"
        "  weights_path: weights/mobilenet.pth\n"
    )
    monkeypatch.chdir(tmp_path)
    param = next(p for p in load_space(str(space)).params if p.name == "weights_path")
    assert param.value == str(tmp_path / "weights" / "mobilenet.pth")  # trials run elsewhere
    space.write_text(space.read_text().replace("mobilenet.pth", "missing.pth"))
    with pytest.raises(UserError, match=r"weights_path .*missing\.pth.* is not a file"):
        load_space(str(space))
