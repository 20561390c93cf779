"""Class name lists of every supported dataset, in one place (index = 0-based class id)."""

from __future__ import annotations

DOTA_V1 = (
    "plane",
    "ship",
    "storage-tank",
    "baseball-diamond",
    "tennis-court",
    "basketball-court",
    "ground-track-field",
    "harbor",
    "bridge",
    "large-vehicle",
    "small-vehicle",
    "helicopter",
    "roundabout",
    "soccer-ball-field",
    "swimming-pool",
)
DOTA_V15 = DOTA_V1 + ("container-crane",)

# DIOR / DIOR-R: the files spell some names in mixed case (`Expressway-Service-area`); loaders match
# case-insensitively and report these canonical spellings.
DIOR = (
    "airplane",
    "airport",
    "baseballfield",
    "basketballcourt",
    "bridge",
    "chimney",
    "dam",
    "Expressway-Service-area",
    "Expressway-toll-station",
    "golffield",
    "groundtrackfield",
    "harbor",
    "overpass",
    "ship",
    "stadium",
    "storagetank",
    "tenniscourt",
    "trainstation",
    "vehicle",
    "windmill",
)

# NWPU VHR-10 ground truth uses class numbers 1..10 in this order (the dataset's readme.txt).
NWPU_VHR10 = (
    "airplane",
    "ship",
    "storage tank",
    "baseball diamond",
    "tennis court",
    "basketball court",
    "ground track field",
    "harbor",
    "bridge",
    "vehicle",
)

# VEDAI's class codes are sparse; this maps code -> name, and VEDAI lists the names in code order.
VEDAI_CODES = {
    1: "car",
    2: "truck",
    4: "tractor",
    5: "camping car",
    7: "motorcycle",
    8: "bus",
    9: "van",
    10: "other",
    11: "pickup",
    23: "boat",
    31: "plane",
}
VEDAI = tuple(VEDAI_CODES[c] for c in sorted(VEDAI_CODES))

# The built-in synthetic aerial set (ghostq.detect.data.synthetic).
SYNTHETIC = ("small-vehicle", "large-vehicle", "plane", "ship", "storage-tank")

# Airbus Oil Storage Detection (SPOT, 2560 x 2560 px): one class, as the CSV spells it.
AIRBUS_OIL = ("oil-storage-tank",)

DATASET_CLASSES: dict[str, tuple[str, ...]] = {
    "dota": DOTA_V15,
    "dior": DIOR,
    "dior-r": DIOR,
    "nwpu": NWPU_VHR10,
    "vedai": VEDAI,
    "synthetic": SYNTHETIC,
    "airbus": AIRBUS_OIL,
}
