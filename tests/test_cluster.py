"""Cluster support: what users deploy with (launcher YAML, KubeRay manifests, Dockerfile) is
valid and consistent; the cluster helpers (storage, auth messages, per-node planning) work; and,
marked `cluster`, a real 2-node Ray cluster on this machine runs a search across both nodes."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from helpers import REPO, one_line_error, run_fer_search

from fer_search.errors import UserError

CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"


def load(path: Path):
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0] if len(docs) == 1 else docs


def containers(pod_template: dict) -> list[dict]:
    return pod_template["template"]["spec"]["containers"]


def dockerfile_ray_version() -> str:
    match = re.search(r"^ARG RAY_VERSION=(\S+)$", (CLUSTER / "Dockerfile").read_text(), re.M)
    assert match, "cluster/Dockerfile has no ARG RAY_VERSION=..."
    return match.group(1)


def parse_search(command: str) -> argparse.Namespace:
    """A `fer-search ...` command line parsed by fer-search's own parser."""
    from fer_search.cli import build_parser, normalise_argv

    argv = shlex.split(command)
    assert argv[0] == "fer-search", command
    return build_parser().parse_args(normalise_argv(argv[1:]))


# ---------------------------------------------------------------- deployment files
def test_every_file_in_cluster_is_documented_in_its_readme():
    readme = (CLUSTER / "README.md").read_text()
    for path in CLUSTER.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert path.relative_to(CLUSTER).as_posix() in readme, path


def test_launcher_yaml_is_a_valid_ray_cluster_config_with_gpu_workers():
    import jsonschema
    import ray

    config = load(CLUSTER / "launcher-aws-gpu.yaml")
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)  # the schema `ray up` validates against

    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert "GPU" not in head["resources"] and not head["node_config"]["InstanceType"].startswith(
        ("g", "p")
    )  # a CPU-only head
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    gpu = [w for w in workers if w["node_config"]["InstanceType"].startswith(("g5", "g6", "p4"))]
    assert gpu, "no GPU worker type"
    for group in gpu:
        assert 0 <= group["min_workers"] <= group["max_workers"] <= config["max_workers"]
    # setup installs fer-search from the checkout the file mounts put on each node
    mounted = [remote for remote, local in config["file_mounts"].items() if local == "."]
    assert mounted and any(
        "pip install" in cmd and mounted[0] in cmd for cmd in config["setup_commands"]
    )
    # every node runs the same image as the KubeRay manifests, with token auth on
    assert config["docker"]["image"] == kuberay_image()
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert "/home/ray/.ray/auth_token" in config["file_mounts"]
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "--head" in starts and "--address=$RAY_HEAD_IP" in starts
    assert "--dashboard-host=127.0.0.1" in starts


def kuberay_image() -> str:
    images = set()
    for spec in (load(KUBERAY / "raycluster.yaml")["spec"], rayjob()["spec"]["rayClusterSpec"]):
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            images |= {c["image"] for c in containers(group)}
    assert len(images) == 1, f"head and workers run different images: {images}"
    return images.pop()


def rayjob() -> dict:
    return load(KUBERAY / "rayjob.yaml")


def test_kuberay_manifests_have_the_required_fields_and_one_image():
    from fer_search import __version__

    cluster, job = load(KUBERAY / "raycluster.yaml"), rayjob()
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert cluster["metadata"]["name"] and job["metadata"]["name"] and job["spec"]["entrypoint"]
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        assert spec["rayVersion"] == dockerfile_ray_version()
        assert spec["authOptions"]["mode"] == "token"
        assert "rayStartParams" in spec["headGroupSpec"]
        head = containers(spec["headGroupSpec"])[0]
        assert "nvidia.com/gpu" not in head["resources"]["limits"]  # a CPU-only head
        for group in spec["workerGroupSpecs"]:
            assert group["groupName"] and "rayStartParams" in group
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
            assert int(containers(group)[0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    image = kuberay_image()
    assert image.rsplit(":", 1)[1] == __version__  # the image is this version of fer-search

    # the standing cluster and the job's cluster are the same but for the replica counts
    def without_replicas(spec):
        spec = json.loads(json.dumps(spec))
        for group in spec["workerGroupSpecs"]:
            for key in ("replicas", "minReplicas", "maxReplicas"):
                group.pop(key)
        return spec

    assert without_replicas(cluster["spec"]) == without_replicas(job["spec"]["rayClusterSpec"])


def test_rayjob_entrypoint_is_a_valid_search_that_fills_the_gpus_it_asks_for():
    from fer_search.cli.commands import search_options
    from fer_search.space import apply_overrides, load_space
    from fer_search.tuning import SearchOptions
    from fer_search.tuning.resources import plan_resources

    job = rayjob()["spec"]
    args = parse_search(job["entrypoint"])
    assert args.address == "auto" and args.gpus == 4 and args.space == "densenet.yaml"
    options = SearchOptions.from_overrides(search_options(args))  # the flags validate
    # the shipped space exists and the overrides validate
    space = apply_overrides(load_space(args.space), **options.space_overrides())

    # --storage and --data are on the shared volume, mounted on the head (and --storage on
    # every worker)
    spec = job["rayClusterSpec"]
    claims = {
        d["metadata"]["name"]: d
        for d in load(KUBERAY / "shared-storage.yaml")
        if d["kind"] == "PersistentVolumeClaim"
    }

    def mounts(group) -> list[str]:
        volumes = {
            v["name"]: v
            for v in group["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        found = []
        for mount in containers(group)[0]["volumeMounts"]:
            volume = volumes.get(mount["name"])
            if volume:
                claim = claims[volume["persistentVolumeClaim"]["claimName"]]
                assert "ReadWriteMany" in claim["spec"]["accessModes"]
                found.append(mount["mountPath"])
        return found

    def on(path: str, group) -> bool:
        return any(path.startswith(m.rstrip("/") + "/") for m in mounts(group))

    assert on(args.storage, spec["headGroupSpec"]) and on(args.data, spec["headGroupSpec"])
    assert all(on(args.storage, group) for group in spec["workerGroupSpecs"])

    # the trials the job's nodes hold use every GPU it asks for
    nodes = [{"CPU": float(spec["headGroupSpec"]["rayStartParams"].get("num-cpus", 4)), "GPU": 0}]
    for group in spec["workerGroupSpecs"]:
        limits = containers(group)[0]["resources"]["limits"]
        per_pod = {"CPU": float(limits["cpu"]), "GPU": float(limits["nvidia.com/gpu"])}
        nodes += [per_pod] * group["minReplicas"]
    total = {k: sum(n[k] for n in nodes) for k in ("CPU", "GPU")}
    plan = plan_resources(args.gpus, space.experiment, total, nodes)
    assert plan["device"] == "cuda"
    assert plan["max_concurrent"] * plan["gpus_per_trial"] == pytest.approx(args.gpus)


def floor(requirement: str) -> str:
    """The `>=` floor of a dependency in pyproject.toml."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if d.startswith(f"{requirement}>=")]
    return spec.split(">=")[1]


def test_dockerfile_carries_the_torch_and_ray_the_tests_run_on():
    text = (CLUSTER / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert args["BASE_IMAGE"].startswith("python:3.11")  # the tested Python
    assert args["TORCH_VERSION"].startswith(floor("torch"))
    assert args["RAY_VERSION"].startswith(floor("ray[tune]"))
    assert '"torch==${TORCH_VERSION}"' in text
    assert '"ray[default,tune]==${RAY_VERSION}"' in text
    assert "COPY fer_search /src/fer_search" in text and 'pip install --no-cache-dir "/src' in text
    assert "wget" in text  # KubeRay's probes
    assert re.search(r"^USER ray$", text, re.M)
    ignore = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert "*" in ignore and "!fer_search/" in ignore and "!pyproject.toml" in ignore


# ---------------------------------------------------------------- helpers, no cluster
def test_storage_paths_and_uris():
    from fer_search.tuning.storage import is_uri, resolve_storage, tune_location

    assert resolve_storage(None) == (Path("results").resolve(), None)
    assert resolve_storage("file:///mnt/nfs/r") == (Path("/mnt/nfs/r"), None)
    root, uri = resolve_storage("s3://bucket/fer")
    assert root == Path("results").resolve() and uri == "s3://bucket/fer"
    assert is_uri("gs://b/p") and not is_uri("/nfs/results") and not is_uri(None)
    assert tune_location("s3://b/p/", "exp") == "s3://b/p/exp"
    assert (
        tune_location("s3://b/p?endpoint_override=127.0.0.1:9000", "exp")
        == "s3://b/p/exp?endpoint_override=127.0.0.1:9000"
    )


def test_trial_files_come_down_and_driver_files_go_up(tmp_path):
    from fer_search.tuning.storage import fetch_trial_files, upload_driver_files

    tune = tmp_path / "bucket" / "exp"
    trial = tune / "trial_a"
    (trial / "checkpoint_000001").mkdir(parents=True)
    (trial / "checkpoint_000001" / "checkpoint.pt").write_bytes(b"big")
    (trial / "progress.csv").write_text("epoch,val_acc\n1,0.5\n")
    (trial / "events.out.tfevents.1.host").write_bytes(b"tb")
    exp = tmp_path / "local" / "exp"
    exp.mkdir(parents=True)
    assert fetch_trial_files(str(tune), exp) == 2
    assert (exp / "trial_a" / "progress.csv").read_text().startswith("epoch")
    assert not (exp / "trial_a" / "checkpoint_000001").exists()  # checkpoints stay in storage

    (exp / "leaderboard.csv").write_text("trial_id\n")
    (exp / "best").mkdir()
    (exp / "best" / "best.pt").write_bytes(b"w")
    assert upload_driver_files(exp, str(tune)) == 2  # trial copies are not sent back
    assert (tune / "leaderboard.csv").is_file() and (tune / "best" / "best.pt").is_file()


def test_token_is_read_in_rays_order(tmp_path, monkeypatch):
    from fer_search.tuning.cluster import auth_token

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert auth_token() == (None, "~/.ray/auth_token")
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-file\n")
    assert auth_token() == ("from-file", "~/.ray/auth_token")
    (tmp_path / "t").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    assert auth_token() == ("from-path", "RAY_AUTH_TOKEN_PATH")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert auth_token() == ("from-env", "RAY_AUTH_TOKEN")


def test_auth_mismatch_is_one_clear_line(token_gcs, monkeypatch):
    from fer_search.tuning.cluster import auth_problem

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "right-token")
    problem = auth_problem(token_gcs)
    assert "uses token authentication" in problem and "RAY_AUTH_MODE is unset" in problem
    assert "RAY_AUTH_MODE=token" in problem and "ray get-auth-token" in problem
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert auth_problem(token_gcs) is None
    monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong-token")
    assert "rejected this machine's token (from RAY_AUTH_TOKEN)" in auth_problem(token_gcs)
    assert auth_problem("ray://127.0.0.1:10001") is None  # the client server speaks for itself


def test_plan_puts_trials_on_nodes_they_fit():
    from fer_search.space import ExperimentSettings
    from fer_search.tuning.resources import plan_resources

    args = None  # --gpus not given: all the cluster has
    nodes = [{"CPU": 8.0, "GPU": 0.0}] + [{"CPU": 7.0, "GPU": 1.0}] * 3
    got = plan_resources(
        args,
        ExperimentSettings(cpus_per_trial=3, gpus_per_trial=0.5),
        {"CPU": 29.0, "GPU": 3.0},
        nodes,
    )
    assert got["max_concurrent"] == 6 and got["nodes"] == 4  # 2 per GPU node
    got = plan_resources(
        args,
        ExperimentSettings(cpus_per_trial=4, gpus_per_trial=0.5),
        {"CPU": 29.0, "GPU": 3.0},
        nodes,
    )
    assert got["max_concurrent"] == 3  # 7 CPUs hold one 4-CPU trial: half of each GPU idles
    with pytest.raises(UserError, match="no Ray node can hold one trial"):
        plan_resources(
            args,
            ExperimentSettings(cpus_per_trial=1, gpus_per_trial=2),
            {"CPU": 29.0, "GPU": 3.0},
            nodes,
        )


# ---------------------------------------------------------------- a real 2-node cluster
SPACE = """\
name: twonode
experiment: {epochs: 2, grace_period: 1, reduction_factor: 2, num_samples: 4, seed: 0,
             cpus_per_trial: 1, top_k: 2}
params:
  model: simple_cnn
  width: 8
  batch_size: 64
  optimizer: sgd
  lr: {type: loguniform, low: 0.003, high: 0.3}
  dropout: {type: uniform, low: 0.0, high: 0.4}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def private_mounts_work() -> bool:
    with tempfile.TemporaryDirectory() as d:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {d}"], capture_output=True
        )
        return probe.returncode == 0


class TwoNodeCluster:
    """`ray start --head` plus `ray start --address=...` on this machine, each in its own
    process group and temp dir; stop() ends exactly those process groups, never `ray stop`.
    The worker node runs in a private mount namespace where `node_local` is its own empty
    tmpfs (when the machine allows it), to stand for a disk the head cannot share."""

    def __init__(
        self,
        root: Path,
        head: tuple[str, ...] = ("--num-cpus=1", "--num-gpus=0"),
        worker: tuple[str, ...] = ("--num-cpus=1", "--num-gpus=0"),
    ) -> None:
        self.root = root
        self.resources = {"head": head, "worker": worker}
        self.temp = Path(tempfile.mkdtemp(prefix="fer-ray-", dir="/tmp"))  # short socket paths
        self.shared = root / "shared"
        self.node_local = root / "node-local"
        self.shared.mkdir()
        self.node_local.mkdir()
        self.port = free_port()
        self.client_port = free_port()  # ray://127.0.0.1:<client_port>
        self.token = uuid.uuid4().hex
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.settings = {"RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0"}
        # the nodes': never the testing switch, which a search takes to its trials itself
        dropped = ("RAY_ADDRESS", "FER_SEARCH_SIMULATE_GPU")
        self.env = {k: v for k, v in os.environ.items() if k not in dropped}
        self.env.update(PYTHONPATH=str(REPO), **self.auth, **self.settings)
        self.procs: list[subprocess.Popen] = []
        self.private_worker = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_node(
        self, argv: list[str], log: Path, resources: tuple[str, ...], private: bool = False
    ) -> None:
        common = ["--block", *resources, "--object-store-memory=100000000"]
        command = ["ray", "start", *argv, *common, f"--temp-dir={self.temp}"]
        if private:
            mount = f"mount -t tmpfs tmpfs {shlex.quote(str(self.node_local))}"
            command = ["unshare", "-m", "sh", "-c", f"{mount} && exec {shlex.join(command)}"]
        with log.open("w") as out:
            proc = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        deadline = time.time() + 120
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

    def start(self) -> None:
        self.start_node(
            [
                "--head",
                f"--port={self.port}",
                f"--ray-client-server-port={self.client_port}",
                "--include-dashboard=false",
                "--dashboard-host=127.0.0.1",
                "--disable-usage-stats",
            ],
            self.root / "head.log",
            self.resources["head"],
        )
        self.private_worker = private_mounts_work()
        self.start_node(
            [f"--address={self.address}", "--disable-usage-stats"],
            self.root / "worker.log",
            self.resources["worker"],
            private=self.private_worker,
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):  # `ray start --block` stops its node on SIGTERM
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)  # a node stops in seconds; then no more patience
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group the node made
        for pid in processes_mentioning(str(self.temp)):  # and any that left the group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def search(
        self, *args: str, auth: dict[str, str] | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """`python -m fer_search ARGS` as a driver of this cluster (no RAY_ADDRESS), with the
        cluster's token, or with `auth` as its only RAY_AUTH_* variables ({} for none)."""
        return run_fer_search(
            *args,
            env={**self.settings, **(self.auth if auth is None else auth), **(env or {})},
            drop_env=("RAY_ADDRESS", "RAY_AUTH_", "FER_SEARCH_SIMULATE_GPU"),
            cwd=self.root,
        )

    def node_gpus(self) -> dict[str, float]:
        """Each alive node's id -> its GPUs, asked of the cluster by a separate driver."""
        code = (
            f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
            "print(json.dumps({n['NodeID']: n['Resources'].get('GPU', 0.0) "
            "for n in ray.nodes() if n['Alive']}))"
        )
        env = {k: v for k, v in self.env.items() if not k.startswith("FER_SEARCH")}
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    # a bystander whose command line looks like Ray's: a broad `pkill -f raylet` would end it
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(900)", "raylet", "gcs_server", "ray::IDLE"]
    )
    cluster = TwoNodeCluster(tmp_path_factory.mktemp("two-node"))
    cluster.bystander = bystander
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        bystander.kill()
        bystander.wait()
        shutil.rmtree(cluster.temp, ignore_errors=True)  # the nodes' session logs


@pytest.mark.cluster
def test_search_runs_trials_on_both_nodes_with_results_in_shared_storage(two_nodes):
    space = two_nodes.root / "twonode.yaml"
    space.write_text(SPACE)
    proc = two_nodes.search(
        "--space", str(space), "--data", "demo", "--demo-size", "0.5",
        "--address", two_nodes.address, "--storage", str(two_nodes.shared),
        "--name", "e2e", "--cpus-per-trial", "1", "--max-concurrent", "2", "--verbose", "0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "2 at a time" in proc.stderr  # the search logs it; the CLI shows it on stderr
    exp = two_nodes.shared / "e2e"
    with (exp / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["status"] for r in rows} <= {"completed", "pruned"}
    # one CPU per node and two trials at once: the trials ran on both nodes
    nodes = {r["node"] for r in rows}
    assert len(nodes) == 2 and all(re.fullmatch(r"[0-9a-f]{56}", n) for n in nodes), nodes
    assert all(r["node_ip"] for r in rows)

    # everything is in the shared storage path: trials, the Optuna study, the final results
    import optuna

    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert {t.user_attrs["ray_trial_id"] for t in study.trials} == {r["trial_id"] for r in rows}
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    for row in rows:
        trial_dir = exp / row["trial_dir"]
        assert trial_dir.parent == exp and (trial_dir / "progress.csv").is_file()
        assert list(trial_dir.glob("checkpoint_*/checkpoint.pt"))
    record = json.loads((exp / "experiment.json").read_text())
    assert record["finished"] and record["resources"]["nodes"] == 2
    assert (exp / "final.json").is_file() and (exp / "report.md").is_file()
    assert (exp / "best" / "best.pt").is_file()
    assert not list(two_nodes.shared.glob(".fer-search-shared-*"))  # the check cleaned up


@pytest.mark.cluster
def test_storage_a_node_cannot_see_is_a_one_line_error(two_nodes):
    if not two_nodes.private_worker:
        pytest.skip("this machine cannot give the worker node a private mount (unshare -m)")
    proc = two_nodes.search(
        "--space", "demo", "--data", "demo", "--demo-size", "0.5", "--address", two_nodes.address,
        "--storage", str(two_nodes.node_local), "--name", "lost",
    )  # fmt: skip
    line = one_line_error(proc)
    assert "is not shared by every Ray node" in line and "cannot see a file" in line
    assert "s3://" in line and "NFS" in line
    assert not (two_nodes.node_local / "lost").exists()  # nothing started


@pytest.mark.cluster
def test_a_driver_without_the_clusters_token_gets_one_clear_line(two_nodes):
    args = ("--space", "demo", "--data", "demo", "--address", two_nodes.address,
            "--storage", str(two_nodes.root / "unused"))  # fmt: skip
    line = one_line_error(two_nodes.search(*args, auth={}))
    assert "uses token authentication" in line and "RAY_AUTH_MODE=token" in line
    wrong = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}
    line = one_line_error(two_nodes.search(*args, auth=wrong))
    assert "rejected this machine's token (from RAY_AUTH_TOKEN)" in line


@pytest.mark.cluster
def test_stopping_ends_only_the_ray_processes_it_started(two_nodes):
    ours = [pid for proc in two_nodes.procs for pid in processes_in_group(proc.pid)]
    assert len(ours) >= 4  # gcs_server, raylets, ...: all in the two groups it made
    two_nodes.stop()
    time.sleep(1)
    assert not [pid for pid in ours if alive(pid)]
    assert not [pid for pid in processes_mentioning(str(two_nodes.temp)) if alive(pid)]
    assert alive(two_nodes.bystander.pid)  # a Ray-looking process it did not start lives on


def processes_in_group(pgid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(") ", 1)[1].split()
                if int(fields[2]) == pgid:
                    found.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


# ---------------------------------------------------------------- a simulated GPU cluster
@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory):
    """The shape of cluster/kuberay/rayjob.yaml on this machine: a head with no GPU and a worker
    that advertises two logical GPUs (as Ray's own tests do). The nodes are started without
    FER_SEARCH_SIMULATE_GPU: a search that sets it takes it to its trials (runtime_env)."""
    cluster = TwoNodeCluster(
        tmp_path_factory.mktemp("gpu-cluster"),
        head=("--num-cpus=1", "--num-gpus=0"),
        worker=("--num-cpus=4", "--num-gpus=2"),
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.temp, ignore_errors=True)


def trial_span(trial_dir: Path) -> tuple[float, float]:
    """When a trial ran: from its first epoch's start to its last epoch's end (Tune's clock)."""
    with (trial_dir / "progress.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_acc") not in ("", "nan", None)]
    first, last = rows[0], rows[-1]
    return float(first["timestamp"]) - float(first["time_this_iter_s"]), float(last["timestamp"])


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.cluster
def test_gpus_torch_cannot_see_stop_the_search_in_one_line(gpu_cluster):
    """Without the testing switch, the worker's two advertised GPUs are GPUs torch cannot see
    (as on a node with no driver): one line naming the node, exit 2, nothing written."""
    started = time.monotonic()
    proc = gpu_cluster.search(
        "--space", "demo", "--data", "demo", "--demo-size", "0.5",
        "--address", gpu_cluster.address, "--gpus", "2",
        "--storage", str(gpu_cluster.shared), "--name", "nocuda",
    )  # fmt: skip
    line = one_line_error(proc)
    assert "advertises GPUs but torch there sees no CUDA device" in line, line
    worker = next(node for node, gpus in gpu_cluster.node_gpus().items() if gpus)
    assert worker[:12] in line
    assert time.monotonic() - started < 60
    assert not (gpu_cluster.shared / "nocuda").exists()


@pytest.mark.cluster
def test_simulated_gpu_cluster_shares_gpus_and_evaluates_on_the_worker(gpu_cluster):
    space = gpu_cluster.root / "gpu.yaml"
    space.write_text(SPACE)
    proc = gpu_cluster.search(
        "--space", str(space), "--data", "demo", "--demo-size", "0.5",
        "--address", gpu_cluster.address, "--storage", str(gpu_cluster.shared),
        "--name", "gpu", "--gpus", "2", "--gpus-per-trial", "0.5", "--cpus-per-trial", "1",
        "--no-asha", "--verbose", "0",
        env={"FER_SEARCH_SIMULATE_GPU": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    exp = gpu_cluster.shared / "gpu"
    plan = json.loads((exp / "experiment.json").read_text())["resources"]
    assert plan["device"] == "cuda" and plan["gpus_per_trial"] == 0.5
    assert plan["max_concurrent"] == 4  # two trials on each of the worker's two GPUs
    nodes = gpu_cluster.node_gpus()
    head = next(node for node, gpus in nodes.items() if not gpus)
    worker = next(node for node, gpus in nodes.items() if gpus)
    with (exp / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    assert {r["node"] for r in rows} == {worker} and head not in {r["node"] for r in rows}
    assert {r["gpu_ids"] for r in rows} <= {"0", "1"}  # ray.get_gpu_ids() of each trial
    by_gpu: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        by_gpu.setdefault(row["gpu_ids"], []).append(trial_span(exp / row["trial_dir"]))
    assert all(most_at_once(spans) <= 2 for spans in by_gpu.values()), by_gpu
    where = json.loads((exp / "final.json").read_text())["evaluated_on"]
    assert where["node"] == worker and where["device"] == "cpu"  # on the worker, simulated
    assert len(where["gpu_ids"]) == 1 and where["gpu_ids"][0] in ("0", "1")


# ---------------------------------------------------------------- a URI --storage
@pytest.mark.slow
def test_s3_storage_keeps_trials_in_the_bucket_and_driver_files_here_and_there(tmp_path):
    """Tune writes the trials to s3:// (a local moto server), the driver keeps its files in
    ./results/<name>/ with a copy of each trial's progress, and uploads them to the bucket."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.create_bucket(Bucket="fer")
        # allow_delayed_open: small files in one PUT (moto mishandles pyarrow's multipart)
        uri = (
            f"s3://fer/runs?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
            "&allow_delayed_open=true"
        )
        (tmp_path / "space.yaml").write_text(SPACE)
        proc = run_fer_search(
            "--space", "space.yaml", "--data", "demo", "--demo-size", "0.5", "--storage", uri,
            "--name", "s3", "--cpus", "2", "--verbose", "0",
            env={**creds, "RAY_DEDUP_LOGS": "0"}, drop_env=("RAY_ADDRESS",), cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="fer", Prefix="runs/s3/")["Contents"]}
    finally:
        server.stop()
    exp = tmp_path / "results" / "s3"
    with (exp / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for row in rows:  # checkpoints in the bucket; the progress also here, for the report
        assert row["trial_dir"] == f"trial_{row['trial_id']}"
        assert (exp / row["trial_dir"] / "progress.csv").is_file()
        assert any(k.startswith(f"runs/s3/{row['trial_dir']}/checkpoint_") for k in keys)
    assert (exp / "optuna.db").is_file() and (exp / "report.md").is_file()
    for name in ("optuna.db", "leaderboard.csv", "final.json", "report.md", "experiment.json"):
        assert f"runs/s3/{name}" in keys  # uploaded beside Tune's files
    assert json.loads((exp / "experiment.json").read_text())["storage_uri"] == uri
