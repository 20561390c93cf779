"""Tiled inference on real 2560 x 2560 satellite images (Airbus oil storage): ghostq's tiled predict vs whole-image
inference vs SAHI slicing the same ONNX model, on whole val images; mAP50, AP small, images/s, detections/image.

    python benchmarks/tiled_airbus.py prepare        # seeded image-level split + tiles of train / val images
    ghostq train configs/airbus.yaml                 # csp_n on the train tiles
    python benchmarks/tiled_airbus.py bench          # every row on the whole val images + bootstrap CIs

Rows (each keeps its detections and scores in `<run>/bench/rows/<row>.json`; a finished row is skipped on a
rerun): `tiled` (ghostq predict --tile, our merge), `whole_<S>` (one letterboxed pass at S px, decode limits
raised so nothing is cut), `whole_<S>_maxdet300` (the default decode limits), `sahi_<postprocess>` (SAHI's
`get_sliced_prediction` with the same slice size / overlap through `benchmarks/sahi_ghostq.py`). Rows run in the
same pass are interleaved image by image, so their times per image compare; each row records its pass.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.atomic import atomic_write_json, atomic_write_text
from ghostq.core.detections import DecodeSettings, Detections
from ghostq.core.image_io import load_image
from ghostq.core.records import Dataset
from ghostq.core.runs import package_versions
from ghostq.detect.data.formats import load_dataset
from ghostq.detect.data.prepare import split_records

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "airbus_oil_storage"
TILE, OVERLAP, VAL_FRAC, SEED = 320, 64, 0.2, 0
EVAL_MAX_DETS = 1500  # pycocotools' per-image limit for scoring (an image holds up to ~900 tanks)
CONF = 0.05  # score threshold of every row (0.001 would give SAHI's merges ~30,000 boxes per image to merge)
DEFAULT = DecodeSettings(score_threshold=CONF)  # max_det 300, pre_nms_topk 3000 per network input
RAISED = DecodeSettings(score_threshold=CONF, max_det=3000, pre_nms_topk=30000)  # whole image: nothing cut
SAHI_ROWS = ("sahi_greedynmm", "sahi_nmm", "sahi_nms")
IMAGE_SPLIT = "image_split.json"  # the whole-image split; the run's split.json is the tile split of training
ROWS = ("tiled", "whole_2560", "whole_2560_maxdet300", "whole_1280", *SAHI_ROWS)


def split_sets(data: Path) -> tuple[Dataset, list, list, dict[str, Any]]:
    """The dataset, its seeded image-level train / val split, and the split as data (file lists + sha256)."""
    import hashlib

    ds = load_dataset("airbus", data)
    train, val = split_records(ds.records, VAL_FRAC, SEED)
    names = {"train": [r.file_name for r in train], "val": [r.file_name for r in val]}
    digest = hashlib.sha256(json.dumps(names).encode()).hexdigest()
    record = {"format": "airbus", "root": str(data), "seed": SEED, "val_frac": VAL_FRAC, "sha256": digest,
              "tile": TILE, "overlap": OVERLAP, **names}
    return ds, train, val, record


def prepare(run: Path, data: Path) -> None:
    """image_split.json (`ghostq train` writes the tile split to split.json), then 320-px tiles (overlap 64,
    tiles without tanks left out) of the train and val images."""
    from ghostq.detect.data.tiling import split_dataset

    ds, train, val, record = split_sets(data)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run / IMAGE_SPLIT, record)
    for name, records in (("tiles_train", train), ("tiles_val", val)):
        tiles = split_dataset(replace(ds, records=records), run / name, tile=TILE, overlap=OVERLAP, skip_empty=True)
        print(f"{name}: {len(records)} images -> {len(tiles.records)} tiles, "
              f"{sum(r.num_objects for r in tiles.records)} objects", flush=True)


# ---------------------------------------------------------------------------------------------- rows
def whole_model(run: Path, size: int) -> Path:
    """The FP32 ONNX file of the trained model traced at `size` px (written once)."""
    from ghostq.detect.checkpoint import checkpoint_spec, load_checkpoint, load_detector
    from ghostq.export.onnx_export import export_onnx

    path = run / "bench" / f"model_fp32_{size}.onnx"
    if not path.is_file():
        checkpoint = run / "fp" / "best.pt"
        model, _ = load_detector(checkpoint)
        spec = checkpoint_spec(load_checkpoint(checkpoint))
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, path, spec=replace(spec, img_size=size))
    return path


def detectors(run: Path, rows: list[str], threads: int) -> tuple[dict[str, Any], list[Any]]:
    """row -> detect(image) -> Detections (image pixels); and the runtimes to close."""
    from ghostq.core.runtime import load_runtime
    from ghostq.deploy.predict import detect_image

    tile_rt = load_runtime(whole_model(run, TILE), backend="ort-cpu", threads=threads, decode=DEFAULT)
    opened, out = [tile_rt], {}
    for row in rows:
        if row == "tiled":
            out[row] = lambda im: detect_image(tile_rt, im, tile=TILE, overlap=OVERLAP)
        elif row.startswith("whole_"):
            size = int(row.split("_")[1])
            decode = DEFAULT if row.endswith("maxdet300") else RAISED
            rt = load_runtime(whole_model(run, size), backend="ort-cpu", threads=threads, decode=decode)
            opened.append(rt)
            out[row] = lambda im, rt=rt: detect_image(rt, im)
        elif row in SAHI_ROWS:
            sys.path.insert(0, str(Path(__file__).parent))
            from sahi_ghostq import sahi_detect

            post = row.split("_")[1].upper()  # sahi_nms: what SAHI itself picks at a score threshold < 0.1
            out[row] = lambda im, post=post: sahi_detect(tile_rt, im, TILE, OVERLAP, post)
    return out, opened


def run_rows(run: Path, val: list, rows: list[str], threads: int) -> dict[str, dict[str, Any]]:
    """Detections of `rows` on every val image, interleaved image by image (one pass: comparable times)."""
    detect, opened = detectors(run, rows, threads)
    warm = load_image(val[0].path)[:2 * TILE, :2 * TILE]
    for row in rows:
        detect[row](np.ascontiguousarray(warm))  # first-call costs (sessions, SAHI's imports) outside the timing
    found: dict[str, list[dict[str, Any]]] = {r: [] for r in rows}
    seconds: dict[str, list[float]] = {r: [] for r in rows}
    counts: dict[str, list[int]] = {r: [] for r in rows}
    for k, rec in enumerate(val):
        image = load_image(rec.path)
        for row in rows:
            t0 = time.perf_counter()
            dets: Detections = detect[row](image)
            seconds[row].append(time.perf_counter() - t0)
            counts[row].append(len(dets))
            for (x1, y1, x2, y2), score, label in dets.rows():
                found[row].append({"image_id": k + 1, "category_id": int(label) + 1,
                                   "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
        print(f"image {k + 1}/{len(val)}: " + ", ".join(f"{r} {seconds[r][-1]:.2f}s" for r in rows), flush=True)
    for rt in opened:
        rt.close()
    pass_id = time.strftime("%Y%m%dT%H%M%S")
    return {r: {"dets": found[r], "seconds": seconds[r], "detections": counts[r], "pass": pass_id,
                "rows_in_pass": rows} for r in rows}


def score(gt: dict[str, Any], row: dict[str, Any], val: list) -> dict[str, Any]:
    """mAP50, mAP50:95, AP by size (pycocotools, at most EVAL_MAX_DETS per image), time and detections/image."""
    from ghostq.detect.evaluate import evaluate_coco

    ev = evaluate_coco(gt, row["dets"], max_dets=EVAL_MAX_DETS)
    gt_counts = [r.num_objects for r in val]
    sec = np.asarray(row["seconds"])
    return {"mAP50": ev["mAP50"], "mAP50_95": ev["mAP50_95"], "by_size": ev["by_size"],
            "s_per_image": float(sec.mean()), "images_per_s": float(1 / sec.mean()),
            "max_detections": int(max(row["detections"])), "detections_per_image": row["detections"],
            "gt_per_image": gt_counts}


def bench(run: Path, data: Path, threads: int, draws: int, out_json: Path, only: list[str],
          max_val: int | None = None) -> None:
    """Every row not yet finished (interleaved), then scores and paired bootstrap CIs against `tiled`."""
    from ghostq.deploy.machine import machine_info
    from ghostq.detect.bootstrap import coco_map, coco_matches, paired_bootstrap
    from ghostq.detect.data.coco_json import dataset_to_coco
    from ghostq.detect.evaluate import load_ground_truth

    ds, _, val, record = split_sets(data)
    val = val[:max_val]
    if not (run / IMAGE_SPLIT).is_file():
        raise SystemExit(f"{run / IMAGE_SPLIT}: not found; run `python benchmarks/tiled_airbus.py prepare` first")
    recorded = json.loads((run / IMAGE_SPLIT).read_text())
    if recorded["sha256"] != record["sha256"]:
        raise SystemExit(f"{run / IMAGE_SPLIT} differs from the split of {data}: run `prepare` again")
    gt = dataset_to_coco(replace(ds, records=val))
    rows_dir = run / "bench" / "rows"
    todo = [r for r in only if not (rows_dir / f"{r}.json").is_file()]
    if todo:
        t0 = time.time()
        for name, row in run_rows(run, val, todo, threads).items():
            atomic_write_json(rows_dir / f"{name}.json", row)
        print(f"rows {todo}: {time.time() - t0:.0f} s", flush=True)
    rows = {}
    for r in only:
        row = json.loads((rows_dir / f"{r}.json").read_text())
        if "mAP50" not in row:
            t0 = time.time()
            row.update(score(gt, row, val))
            print(f"scored {r}: mAP50 {100 * row['mAP50']:.1f} ({time.time() - t0:.0f} s)", flush=True)
            atomic_write_json(rows_dir / f"{r}.json", row)
        rows[r] = row
    diffs = {}
    if "tiled" in rows:  # map_difference's computation, with each row's pycocotools matches computed once
        truth = load_ground_truth(gt)
        print(f"paired bootstrap against tiled: matching {len(rows)} rows, then {draws} draws each", flush=True)
        matches = {r: coco_matches(truth, row["dets"], max_dets=EVAL_MAX_DETS) for r, row in rows.items()}
        for b in rows:
            if b != "tiled":
                ma, mb = matches["tiled"], matches[b]
                diffs[f"{b} - tiled"] = {"metric": "mAP50", **paired_bootstrap(
                    lambda w, m=ma: coco_map(m, w)["mAP50"], lambda w, m=mb: coco_map(m, w)["mAP50"],
                    ma.num_images, draws, seed=0)}
    result = {
        "split": {k: record[k] for k in ("sha256", "seed", "val_frac", "tile", "overlap")}
        | {"train": len(record["train"]), "val": len(record["val"]), "val_files": record["val"]},
        "eval_max_dets": EVAL_MAX_DETS, "score_threshold": CONF, "threads": threads, "val_images": len(val),
        "rows": {r: {k: v for k, v in row.items() if k != "dets"} for r, row in rows.items()},
        "differences": diffs, "machine": machine_info(), "versions": package_versions() | _sahi_version(),
        "bootstrap": {"draws": draws, "seed": 0},
    }
    atomic_write_json(out_json, result)
    atomic_write_text(out_json.with_suffix(".md"), markdown(result))
    print(markdown(result))


def _sahi_version() -> dict[str, str]:
    from importlib import metadata

    try:
        return {"sahi": metadata.version("sahi")}
    except metadata.PackageNotFoundError:
        return {}


def markdown(result: dict[str, Any]) -> str:
    """The README table: one line per row, then each difference to `tiled` with its 95% interval."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}"

    lines = ["| row | mAP50 | mAP50:95 | AP50 small | AP50 medium | s / image | images/s | max dets / image | pass |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        s = r["by_size"]
        lines.append(f"| {name} | {pct(r['mAP50'])} | {pct(r['mAP50_95'])} | {pct(s['small']['AP50'])} | "
                     f"{pct(s['medium']['AP50'])} | {r['s_per_image']:.2f} | {r['images_per_s']:.2f} | "
                     f"{r['max_detections']} | {r['pass']} |")
    first = next(iter(result["rows"].values()), None)
    if first is not None:
        shares = ", ".join(f"{k} {100 * v['gt_share']:.0f}%" for k, v in first["by_size"].items())
        lines += ["", f"Val objects by size: {shares}; GT per image {first['gt_per_image']}."]
    lines += ["", "| difference | mAP50 (95% CI, paired bootstrap over val images) |", "|---|---|"]
    for name, d in result["differences"].items():
        lines.append(f"| {name} | {100 * d['diff']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}] |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("prepare", "bench"))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--run", default=str(REPO / "runs" / "airbus"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "tiled_airbus.json"))
    parser.add_argument("--max-val", type=int, default=None, help="only the first N val images (smoke tests)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.step == "prepare":
        prepare(Path(args.run), Path(args.data))
    else:
        rows = [r for r in args.rows.split(",") if r]
        unknown = [r for r in rows if r not in ROWS]
        if unknown:
            raise SystemExit(f"--rows: unknown {unknown}; choose from {', '.join(ROWS)}")
        bench(Path(args.run), Path(args.data), args.threads, args.draws, Path(args.json), rows, args.max_val)


if __name__ == "__main__":
    main()
