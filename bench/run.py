"""``python -m bench.run [--quick] [--out FILE]``: run every benchmark suite, print a table and
write the figures as JSON (default ``bench/results.json``).

Each suite module has ``measure(quick: bool) -> dict`` returning raw figures and, for each, a
ceiling measured in the same run under ``<figure>_ceiling``. The table prints each figure with
its ceiling and their ratio; the JSON holds every raw number plus ``<figure>_ratio``. A suite
that fails is reported (``errors``) and the others still run. Figures the suites do not
measure yet are listed as ``missing`` rather than invented.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

__all__ = ["main", "SUITES", "REQUIRED"]

#: suite modules, in the order they run
SUITES = ("bench.codec_bench", "bench.crypto_bench", "bench.store_bench", "bench.conn_bench", "bench.relay_bench", "bench.mls_bench", "bench.groups_bench", "bench.attach_bench")

#: the figures issues 6, 14 and 15 ask for (top-level numeric keys of results.json)
REQUIRED = (
    "relay_envelopes_per_s",
    "relay_ceiling_per_s",
    "latency_p50_ms_at_1000",
    "latency_p99_ms_at_1000",
    "client_hybrid_msgs_per_s",
    "client_classical_msgs_per_s",
    "pqxdh_sessions_per_s",
    "connections_held",
    "rss_bytes_per_connection",
    "store_envelopes_per_s",
    # issue 14: CPU per relayed envelope at each node, a short hybrid text's envelope (bench/relay_bench.py)
    "relay_cpu_us_per_env_sending_node",
    "relay_cpu_us_per_env_receiving_node",
    "envelope_bytes_100b_text_hybrid",
    # issue 14 item 2: the frame codec on a Push of 256 envelopes and a Deliver of 128 (bench/codec_bench.py)
    *(f"codec_{frame}_{op}_us" for frame in ("push", "deliver") for op in ("decode", "encode")),
    # issue 15: MLS at 1,500 members, X-Wing suite and suite 1 (bench/mls_bench.py)
    *(
        f"mls_{suite}_{figure}"
        for suite in ("xwing", "suite1")
        for figure in (
            "create_commit_ms", "update_commit_ms", "process_commit_ms", "update_commit_filled_ms",
            "process_commit_filled_ms", "add_commit_ms", "join_ms", "remove_commit_ms", "app_message_us",
        )
    ),
    # issue 16 item 7: a 1,500-device group over three nodes (bench/groups_bench.py)
    "groups_create_ms",
    "groups_message_ms",
    "groups_envelopes_beta",
    "groups_bytes_beta",
    "groups_commit_process_ms",
    "groups_body_bytes_beta",
    "groups_path_commit_bytes",
    "groups_path_commit_nodes_ms",
    "groups_path_commit_stored_bytes_per_node",
    "groups_handover_ms",
    # issue 17 item 8: a file encrypted, uploaded, downloaded through the federation, decrypted (bench/attach_bench.py)
    "attach_upload_mib_per_s",
    "attach_download_mib_per_s",
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def _ratios(results: dict) -> dict[str, float]:
    return {
        f"{key}_ratio": results[key] / results[f"{key}_ceiling"]
        for key in list(results)
        if isinstance(results.get(f"{key}_ceiling"), (int, float)) and results[f"{key}_ceiling"]
        and isinstance(results[key], (int, float))
    }


def _table(results: dict) -> list[str]:
    rows = [f"{'figure':<40} {'value':>14} {'ceiling':>14} {'ratio':>7}"]
    for key, value in results.items():
        if isinstance(value, str):  # a setting the figures depend on (relay_ids)
            rows.append(f"{key:<40} {value:>14}")
            continue
        if not isinstance(value, (int, float)) or key.endswith(("_ceiling", "_ratio")):
            continue
        ceiling = results.get(f"{key}_ceiling")
        ratio = results.get(f"{key}_ratio")
        rows.append(
            f"{key:<40} {value:>14,.1f} {'' if ceiling is None else format(ceiling, '>14,.1f'):>14}"
            f" {'' if ratio is None else format(ratio, '>7.2f'):>7}"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description="Run the Sonet benchmarks; print a table, write JSON.")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the code, not the machine")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write the JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    results: dict = {}
    errors: dict[str, str] = {}
    timings: dict[str, float] = {}
    for name in SUITES:
        started = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results.update(importlib.import_module(name).measure(args.quick))
        except Exception:  # noqa: BLE001 - one failing suite must not hide the others
            errors[name] = traceback.format_exc(limit=3).strip().splitlines()[-1]
            print(f"  {name} failed: {errors[name]}", file=sys.stderr)
        timings[name] = round(time.monotonic() - started, 1)
    results.update(_ratios(results))
    missing = [key for key in REQUIRED if not isinstance(results.get(key), (int, float))]
    report = {
        **results,
        "missing": missing,
        "errors": errors,
        "suite_seconds": timings,
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print("\n".join(_table(results)))
    if missing:
        print(f"not measured yet: {', '.join(missing)}")
    print(f"written to {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
