"""Vendors: named sources of annotation records, listed in a YAML file.

.. code-block:: yaml

    vendors:
      - name: acme
        price_per_example: 0.85        # optional, any currency, per example delivered
        annotator: acme-team           # optional default for records without one
        files:
          - path: acme/sft.json        # relative to this YAML file
            format: alpaca             # optional; detected when absent
          - acme/more.jsonl            # a bare path works too

The YAML is read with ``yaml.safe_load``. Mistakes raise :class:`curate.basics.errors.CurateError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotations.formats import FORMATS, detect_format, read_file
from annotations.records import Record, Reject
from curate.basics.errors import CurateError
from curate.basics.yamlconfig import read_yaml_mapping


@dataclass
class VendorFile:
    path: Path
    format: str | None = None
    annotator: str | None = None


@dataclass
class Vendor:
    name: str
    files: list[VendorFile]
    price_per_example: float | None = None


@dataclass
class VendorData:
    """What was read for one vendor: ``read`` == len(records) + len(rejects)."""

    vendor: Vendor
    records: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)  # per file: path, format, read, records, rejects

    @property
    def read(self) -> int:
        return len(self.records) + len(self.rejects)


def load_config(path: str | Path) -> list[Vendor]:
    """Parse a vendors YAML file; file paths become absolute (relative to the YAML)."""
    path = Path(path)
    config = read_yaml_mapping(path)
    entries = config.get("vendors") if isinstance(config, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CurateError(f"{path}: needs a non-empty 'vendors:' list")
    vendors, seen = [], set()
    for k, entry in enumerate(entries):
        where = f"{path}: vendors[{k}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise CurateError(f"{where} needs a 'name'")
        name = entry["name"]
        if name in seen:
            raise CurateError(f"{where}: vendor {name!r} listed twice")
        seen.add(name)
        unknown = set(entry) - {"name", "files", "price_per_example", "annotator"}
        if unknown:
            raise CurateError(f"{where} ({name}): unknown keys {sorted(unknown)}")
        price = entry.get("price_per_example")
        if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0):
            raise CurateError(f"{where} ({name}): price_per_example must be a number >= 0")
        files = entry.get("files")
        if not isinstance(files, list) or not files:
            raise CurateError(f"{where} ({name}): needs a non-empty 'files:' list")
        vendors.append(Vendor(name, [_vendor_file(f, path.parent, f"{where} ({name})", entry.get("annotator"))
                                     for f in files], None if price is None else float(price)))
    return vendors


def _vendor_file(spec: Any, base: Path, where: str, annotator: str | None) -> VendorFile:
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
        raise CurateError(f"{where}: each file needs a 'path'")
    unknown = set(spec) - {"path", "format", "annotator"}
    if unknown:
        raise CurateError(f"{where}: file {spec['path']!r} has unknown keys {sorted(unknown)}")
    fmt = spec.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise CurateError(f"{where}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    path = (base / spec["path"]).resolve()
    if not path.is_file():
        raise CurateError(f"{where}: file not found: {path}")
    return VendorFile(path, fmt, spec.get("annotator", annotator))


def read_vendor(vendor: Vendor) -> VendorData:
    """Read every file of a vendor into records and rejects."""
    data = VendorData(vendor)
    for f in vendor.files:
        records, rejects = read_file(f.path, vendor=vendor.name, fmt=f.format, annotator=f.annotator)
        fmt = f.format or (detect_format(records[0].original) if records else None)
        data.records += records
        data.rejects += rejects
        data.files.append({"path": str(f.path), "format": fmt, "read": len(records) + len(rejects),
                           "records": len(records), "rejects": len(rejects)})
    return data

