"""The class-incremental protocol on NWPU VHR-10 (issue 14): which images and labels each phase sees, and the
base model trained on the first 5 classes.

- the split is the reference run's (`runs/nwpu/split.json`, checked by sha256);
- base: the train images holding at least one object of the 5 base classes, only those labelled;
- phase k: the train images holding at least one object of its classes, only its classes labelled (old classes
  in those images are background, as a field team's new data would be labelled);
- the val split is scored with every class learned so far (`known`).

    python benchmarks/incremental_protocol.py --train-base data.root=../shared/nwpu_vhr10
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from ghostq.core.config import Config
from ghostq.core.records import ImageRecord
from ghostq.detect.data.prepare import DataSplits, prepare_data, select_classes, split_record
from ghostq.stages.config import load_config

REPO = Path(__file__).resolve().parents[1]
BASE = ("airplane", "ship", "storage tank", "baseball diamond", "tennis court")
NEW = ("basketball court", "ground track field", "harbor", "bridge", "vehicle")
PHASES_1 = (NEW,)
PHASES_5 = tuple((c,) for c in NEW)


def full_splits(cfg: Config, reference: Path | None) -> DataSplits:
    """The config's split with all classes; when `reference` (a split.json) is given it must be the same split."""
    splits = prepare_data(cfg)
    if reference is not None:
        ours = split_record(splits, cfg.run.seed, cfg.data.val_frac)
        theirs = json.loads(reference.read_text(encoding="utf-8"))
        if ours["sha256"] != theirs["sha256"]:
            raise SystemExit(f"{reference}: the recorded split differs from the config's split")
    return splits


def labelled(records: list[ImageRecord], all_classes: tuple[str, ...], keep: tuple[str, ...],
             only_with_objects: bool) -> list[ImageRecord]:
    """The records with only the objects of `keep` (class ids re-indexed in `keep` order); with
    `only_with_objects`, the images holding none of them are dropped."""
    from ghostq.core.records import Dataset

    ds = select_classes(Dataset("nwpu", Path("."), all_classes, records), keep)
    return [r for r in ds.records if len(r.labels) or not only_with_objects]


def phase_splits(splits: DataSplits, classes: tuple[str, ...], val_classes: tuple[str, ...]) -> DataSplits:
    """Train images of `classes` (only they labelled), the whole val split labelled with `val_classes`."""
    train = labelled(splits.train, splits.classes, classes, only_with_objects=True)
    val = labelled(splits.val, splits.classes, val_classes, only_with_objects=False)
    return replace(splits, train=train, val=val, classes=tuple(val_classes))


def base_config(cfg: Config, run_root: Path) -> Config:
    """The joint run's settings, trained on the base classes into `run_root`/base."""
    return cfg.model_copy(update={
        "run": cfg.run.model_copy(update={"name": "base", "root": run_root}),
        "data": cfg.data.model_copy(update={"classes": list(BASE)}),
    })


def train_base(cfg: Config, run_root: Path, reference: Path | None) -> Path:
    """Train the base model (5 classes, only their images) with the joint run's settings; returns best.pt."""
    import torch

    from ghostq.core.runs import RunDir
    from ghostq.detect.distributed import DistInfo
    from ghostq.detect.trainer import Trainer

    best = run_root / "base" / "fp" / "best.pt"
    if best.is_file():
        print(f"{best}: kept (delete it to retrain)")
        return best
    splits = full_splits(cfg, reference)
    base = phase_splits(splits, BASE, BASE)
    bcfg = base_config(cfg, run_root)
    RunDir(bcfg.run_dir).path.mkdir(parents=True, exist_ok=True)
    print(f"base training: {len(base.train)} train images (of {len(splits.train)}), {len(base.val)} val images, "
          f"classes {list(BASE)}", flush=True)
    start = time.time()
    trainer = Trainer(bcfg, base, DistInfo(), torch.device("cpu"))
    summary = trainer.fit(None, True)
    print(f"base training done in {time.time() - start:.0f} s: mAP50 {summary.get('mAP50')}", flush=True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="dotted config overrides (data.root=...)")
    parser.add_argument("--config", default=str(REPO / "configs" / "nwpu.yaml"))
    parser.add_argument("--out", default=str(REPO / "runs" / "acil"))
    parser.add_argument("--reference", default=str(REPO / "runs" / "nwpu" / "split.json"),
                        help="split.json the split must equal ('' to skip: smoke runs)")
    parser.add_argument("--train-base", action="store_true")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    if args.train_base:
        train_base(cfg, Path(args.out), Path(args.reference) if args.reference else None)


if __name__ == "__main__":
    main()
