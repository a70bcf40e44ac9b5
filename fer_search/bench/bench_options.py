"""What `fer-search bench` is asked to measure: one typed, validated object."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_search.errors import UserError, did_you_mean

__all__ = ["DATA_ARGS", "FIGURE_GROUPS", "BenchOptions"]

# `--only` takes these
FIGURE_GROUPS = ("data", "pipeline", "overhead", "asha", "memory", "checkpoint", "rungs", "scale")
# a bench with no --only: all but scale (simulated trials at cluster scale: half an hour alone)
DEFAULT_GROUPS = FIGURE_GROUPS[:-1]
DATA_ARGS = ("data", "class_set", "ferplus", "ferplus_mode", "demo_size", "no_cache")
DEFAULT_OUT = Path("results/benchmarks")


@dataclass(frozen=True)
class BenchOptions:
    """The bench flags. `data` None: the demo data for --quick, else what `fer-search` picks
    (./data if it holds FER2013); `only` empty: every figure group."""

    quick: bool = False
    device: str = "cpu"
    out: Path = DEFAULT_OUT
    only: tuple[str, ...] = ()
    as_json: bool = False
    data: str | None = None
    class_set: str | None = None
    ferplus: str | None = None
    ferplus_mode: str = "majority"
    demo_size: float = 1.0
    no_cache: bool = False
    command: str | None = None  # how bench was started (None: rebuilt from the options)

    @classmethod
    def from_call(
        cls,
        *,
        quick: bool = False,
        device: str = "cpu",
        out: Path | str = DEFAULT_OUT,
        only: Iterable[str] | None = None,
        as_json: bool = False,
        data_args: Mapping[str, Any] | None = None,
        command: str | None = None,
    ) -> BenchOptions:
        """`bench.run`'s arguments, checked once; `data_args` are the CLI's data flags."""
        data_args = dict(data_args or {})
        for key in data_args:
            if key not in DATA_ARGS:
                raise UserError(
                    f"unknown bench data argument {key!r}{did_you_mean(key, DATA_ARGS)}"
                )
        if data_args.get("ferplus_mode") is None:
            data_args.pop("ferplus_mode", None)
        options = cls(
            quick=bool(quick), device=device, out=Path(out), only=tuple(dict.fromkeys(only or ())),
            as_json=bool(as_json), command=command, **data_args,
        )  # fmt: skip
        options.validate()
        return options

    def validate(self) -> None:
        for group in self.only:
            if group not in FIGURE_GROUPS:
                hint = did_you_mean(group, FIGURE_GROUPS)
                raise UserError(f"unknown bench figure group {group!r}{hint}")
        if not self.demo_size > 0:
            raise UserError(f"--demo-size must be > 0, got {self.demo_size:g}")

    @property
    def groups(self) -> tuple[str, ...]:
        return self.only or DEFAULT_GROUPS

    @property
    def data_is_demo(self) -> bool:
        return self.data == "demo" or (self.data is None and self.quick)

    def load_kwargs(self, demo_size: float | None = None) -> dict[str, Any]:
        """`api.load_data`'s arguments: the run's data, or the demo data at `demo_size`."""
        kwargs: dict[str, Any] = {
            "source": self.data or ("demo" if self.quick else None),
            "class_set": self.class_set or "all",
            "ferplus": self.ferplus,
            "ferplus_mode": self.ferplus_mode,
            "cache": not self.no_cache,
            "demo_size": self.demo_size,
        }
        if demo_size is not None:
            kwargs.update(source="demo", ferplus=None, demo_size=demo_size)
        return kwargs

    def command_line(self) -> str:
        """The command as given, else the `fer-search bench` flags that repeat this run."""
        if self.command:
            return self.command
        argv = ["fer-search", "bench"] + (["--quick"] if self.quick else [])
        argv += [] if self.device == "cpu" else ["--device", self.device]
        for flag in ("data", "class_set", "ferplus"):
            if getattr(self, flag):
                argv += [f"--{flag.replace('_', '-')}", str(getattr(self, flag))]
        argv += [] if self.demo_size == 1 else ["--demo-size", f"{self.demo_size:g}"]
        argv += [] if self.out == DEFAULT_OUT else ["--out", str(self.out)]
        for group in self.only:
            argv += ["--only", group]
        return shlex.join(argv + (["--json"] if self.as_json else []))
