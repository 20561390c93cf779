"""ghostq.deploy runs without torch: imported and used with torch unimportable, and no module of it (nor any
ghostq module it imports) imports torch at module level."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from onnx_models import make_blob_model

SRC = Path(__file__).resolve().parents[2] / "src"
DEPLOY = SRC / "ghostq" / "deploy"

BLOCKER = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name == "torchvision":
            raise ImportError(f"torch is blocked in this test ({name})")
sys.meta_path.insert(0, _NoTorch())
"""


def _run_without_torch(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(SRC)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )


def test_deploy_runs_an_onnx_model_with_torch_unimportable(tmp_path: Path) -> None:
    model = make_blob_model(tmp_path / "blob.onnx", size=64)
    out = tmp_path / "pred"
    code = f"""
        import sys
        from pathlib import Path
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker did not work")
        import numpy as np
        from PIL import Image
        import ghostq.deploy as gd
        from ghostq.deploy.bench import BenchSettings, bench_model
        from ghostq.deploy.predict import predict_paths
        from ghostq.core.tiling import list_images

        rt = gd.load_runtime({str(model)!r}, threads=1)
        image = np.full((80, 100, 3), 40, np.uint8)
        image[20:50, 10:40] = 255
        batch, placements = gd.preprocess([image], rt.info.img_size)
        det = rt.infer(batch)[0]
        box = gd.unletterbox(det.boxes, placements[0])[0]
        assert len(det) == 1 and det.scores[0] > 0.9, det
        assert np.abs(box - [10, 20, 40, 50]).max() < 1.5, box
        Image.fromarray(image).save({str(tmp_path / "img.png")!r})
        images = list_images([{str(tmp_path / "img.png")!r}])
        summary = predict_paths(rt, images, Path({str(out)!r}))
        assert summary["detections"] == 1, summary
        result = bench_model({str(model)!r}, "ort-cpu", BenchSettings(batches=(1,), warmup=1, iters=2, threads=1))
        assert result["batches"]["1"]["iters"] == 2
        assert "torch" not in sys.modules, "torch got imported"
        print("OK")
    """
    proc = _run_without_torch(tmp_path, code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")
    assert (out / "img.png").is_file() and (out / "detections.json").is_file()


def test_torch_backend_says_torch_is_missing(tmp_path: Path) -> None:
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"not used")
    code = f"""
        from ghostq.deploy import load_runtime
        from ghostq.core.errors import GhostqError
        try:
            load_runtime({str(ckpt)!r})
        except GhostqError as err:
            print("GhostqError", err)
    """
    proc = _run_without_torch(tmp_path, code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'GhostqError backend torch needs the torch package (pip install "ghostq[train]")' in proc.stdout


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions (absolute names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            names.add("<relative import>")
    return names


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_deploy_imports_only_core_and_never_torch() -> None:
    # every module of ghostq.deploy and every ghostq module they reach: no torch, nothing above core
    todo = [f"ghostq.deploy.{p.stem}" if p.stem != "__init__" else "ghostq.deploy" for p in DEPLOY.glob("*.py")]
    seen: set[str] = set()
    offenders = []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        for imp in _imports(path):
            root = imp.split(".")[0]
            if root in ("torch", "torchvision") or imp == "<relative import>":
                offenders.append(f"{name} imports {imp}")
            elif root == "ghostq":
                if not imp.startswith(("ghostq.core", "ghostq.deploy")):
                    offenders.append(f"{name} imports {imp}")
                todo.append(imp)
    assert not offenders, offenders
    assert {"ghostq.core.tiling", "ghostq.core.letterbox", "ghostq.core.runtime"} <= seen  # the walk went through


def test_cli_bench_and_predict_run_with_torch_unimportable(tmp_path: Path) -> None:
    from PIL import Image

    model = make_blob_model(tmp_path / "blob.onnx", size=64)
    image = np.full((80, 100, 3), 40, np.uint8)
    image[20:50, 10:40] = 255
    Image.fromarray(image).save(tmp_path / "img.png")
    code = f"""
        import sys
        from ghostq.cli import bench_commands, main  # bench_commands: registers `bench`
        for argv in (
            ["bench", "--model", {str(model)!r}, "--warmup", "1", "--iters", "2", "--threads", "1",
             "--json", {str(tmp_path / "b.json")!r}],
            ["predict", {str(tmp_path / "img.png")!r}, "--model", {str(model)!r}, "--out", {str(tmp_path / "p")!r},
             "--threads", "1"],
        ):
            sys.argv = ["ghostq", *argv]
            try:
                main()
            except SystemExit as exc:
                assert not exc.code, exc.code
        assert "torch" not in sys.modules
        print("OK")
    """
    proc = _run_without_torch(tmp_path, code)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]
    assert json.loads((tmp_path / "b.json").read_text())["batches"]["1"]["iters"] == 2
    assert (tmp_path / "p" / "dota" / "Task2_car.txt").is_file()
