"""What a scan measures: its settings, its members (layer, unit, seed) and their run folders.

A scan folder holds ``scan.json`` (the settings and members) and one ordinary run folder per member,
``LAYER/uUNIT-sSEED``: each one is a run ``mango show`` and the analyses read as any other.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import MangoError, first_line
from ..experiment.config import RunConfig
from ..experiment.files import write_json

MANIFEST = "scan.json"


@dataclass
class ScanConfig:
    """The settings of a scan; those shared with a run mean the same as there."""

    model: str = "mnist-snn"
    layers: list[str] = field(default_factory=lambda: ["lif2"])
    units: str = "all"
    budget: int = 3000
    seeds: int = 1
    #: ``auto``: as for a run, but ``sepcma-2step`` on a noise-free continuous latent (:mod:`mango.optimizers.auto`)
    optimizer: str = "auto"
    optimizer_options: dict = field(default_factory=dict)
    generator: str = "mnist-sngan"
    generator_weights: str | None = None
    model_weights: str | None = None
    steps: int | None = None
    batch: int | None = None
    #: one stream of presentations serves every unit (a recorded population); ``budget`` is then the total per seed
    shared: bool = False
    #: a weighted sum of the layer's units per member, with ``u`` the member's unit (e.g. ``u - mean(*)``)
    objective: str | None = None
    #: the members' readout (default: the layer's own; ``rate+drive``: see :mod:`mango.targets.drive`)
    readout: str | None = None
    #: rig models: seconds of live rig to wait for a block's answers (as ``mango run --timeout``)
    timeout: float = 10.0

    def validate(self) -> ScanConfig:
        if not self.layers or not all(isinstance(x, str) and x for x in self.layers):
            raise MangoError(f"layers must be one or more layer names, got {self.layers!r}")
        for name in ("budget", "seeds"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise MangoError(f"{name} must be a positive integer, got {v!r}")
        RunConfig.from_dict(self.run_settings(self.layers[0], 0, 0))  # the members' settings are valid runs
        return self

    def run_settings(self, layer: str, unit: int, seed: int) -> dict:
        """The :class:`RunConfig` of one member."""
        return {"generator": self.generator, "model": self.model, "target": f"{layer}:{unit}",
                "optimizer": self.optimizer, "optimizer_options": dict(self.optimizer_options),
                "budget": self.budget, "batch": self.batch, "seed": seed, "model_weights": self.model_weights,
                "generator_weights": self.generator_weights, "steps": self.steps, "objective": self.objective,
                "readout": self.readout, "timeout": self.timeout}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Member:
    """One unit of one layer, searched with one seed, in its own run folder."""

    layer: str
    unit: int
    seed: int

    def run_dir(self, root: Path) -> Path:
        return Path(root) / self.layer / f"u{self.unit:04d}-s{self.seed}"


def resolve_units(cfg: ScanConfig) -> dict[str, tuple[int, ...]]:
    """Each layer's units, checked against the model (an unknown layer, a unit out of range: one line)."""
    from ..targets import make_target
    from ..targets.spec import _unit_set

    if cfg.model.startswith("rig:"):
        return {"ch": _rig_channels(cfg)}
    out = {}
    for layer in cfg.layers:
        every = make_target(cfg.model, f"{layer}:*", cfg.model_weights, steps=cfg.steps)
        n = len(every.units or ())
        chosen = tuple(range(n)) if cfg.units == "all" else _unit_set(cfg.units, f"--units {cfg.units}")
        if chosen == "all":
            chosen = tuple(range(n))
        bad = [u for u in chosen if u >= n]
        if bad:
            raise MangoError(f"unit {bad[0]} out of range for layer {layer!r}: it has {n} units (0..{n - 1})")
        out[layer] = tuple(chosen)
    return out


def _rig_channels(cfg: ScanConfig) -> tuple[int, ...]:
    """A rig's units are its channels (``--layers ch``), all of them recorded from every presentation."""
    from ..rig.target import make_transport
    from ..targets.spec import _unit_set

    if cfg.layers != ["ch"]:
        raise MangoError(f"a rig's units are its channels: give --layers ch, not {','.join(cfg.layers)}")
    if not cfg.shared:
        raise MangoError("a scan of a rig's channels is --shared: every presentation records every channel")
    if cfg.objective:
        raise MangoError("--objective is not supported with a rig model yet; scan its channels one by one")
    chosen = _unit_set(cfg.units, f"--units {cfg.units}") if cfg.units != "all" else "all"
    if chosen == "all":
        transport = make_transport(cfg.model[4:])
        try:
            transport.open()
            n = transport.channels
        finally:
            transport.close()
        if n is None:
            raise MangoError(f"the rig at {cfg.model} does not say how many channels it records: give --units "
                             "A-B or i,j,k")
        return tuple(range(n))
    return tuple(chosen)


def members(cfg: ScanConfig, units: dict[str, tuple[int, ...]]) -> list[Member]:
    return [Member(layer, u, s) for layer, us in units.items() for u in us for s in range(cfg.seeds)]


def write_manifest(root: Path, cfg: ScanConfig, units: dict[str, tuple[int, ...]]) -> None:
    """``scan.json``, or check the one there: a folder made with other settings is refused in one line."""
    path = Path(root) / MANIFEST
    data = {"settings": cfg.to_dict(), "units": {k: list(v) for k, v in units.items()}}
    if path.exists():
        old = read_manifest(root)
        free = ("budget", "timeout")  # may change between reruns, as for a run's --resume
        mine = {k: v for k, v in data["settings"].items() if k not in free}
        theirs = {k: v for k, v in old["settings"].items() if k not in free}
        diff = [f"{k}: scan has {theirs.get(k)!r}, given {mine.get(k)!r}" for k in mine if mine[k] != theirs.get(k)]
        if diff:
            raise MangoError(f"{root} holds a scan made with other settings ({'; '.join(diff)}): choose another "
                             "--out, or give the same settings to continue it")
    Path(root).mkdir(parents=True, exist_ok=True)
    write_json(path, data)


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise MangoError(f"cannot read scan manifest {path}: {first_line(exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        raise MangoError(f"{path} is not a MANGO scan manifest")
    names = {f.name for f in fields(ScanConfig)}
    unknown = sorted(set(data["settings"]) - names)
    if unknown:
        raise MangoError(f"{path} has unknown settings {unknown}")
    return data
