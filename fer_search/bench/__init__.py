"""`fer-search bench`: how fast the pipeline is, what the search costs, what ASHA saves.

Eight figure groups, each a dict of raw measurements with its headline ratio, the goal and
whether it was met; every ratio compares two things measured in this run, alternated where
possible and summarised by medians, because the machines it runs on are noisy:

1-2. `pipeline`: the engine against the bare model and against a naive torchvision pipeline;
3-4. `search`: search overhead against a plain loop, and what ASHA saves (through the API);
5.   `memory`: driver and per-trial memory, and the private memory the dataset costs a trial;
6.   `data`: CSV parse cold vs cached, `fer-search --help` start time;
7.   `rungs`: whether ASHA's first rung predicts the end (Kendall's tau), with one schedule per
     trial and with the schedule annealed at every rung (`rung_anneal`);
8.   `scale` (only when named): the control plane at a thousand simulated trials, 8 to 64 at
     once (overhead, driver CPU per result, suggest latency, memory, post-search, resume).

`run` writes `<out>/bench[-quick].json` and `.md` (command, machine, versions, date) and
prints a table (`as_json`: the JSON); `only=[GROUP, ...]` measures some figure groups and
writes `bench[-quick]-GROUP.*`. Figures only; nothing is asserted.

Modules, lowest first: options, measure, plan, output, pipeline, search, rungs, memory, data,
scale, and runner (`run`; a module named run.py would be shadowed by the function `bench.run`).
"""

from __future__ import annotations

from fer_search.bench.bench_options import FIGURE_GROUPS, BenchOptions
from fer_search.bench.plan import Context, Plan, make_plan
from fer_search.bench.runner import jobs, run, run_options

__all__ = ["FIGURE_GROUPS", "BenchOptions", "Context", "Plan", "jobs", "make_plan", "run",
           "run_options"]  # fmt: skip
