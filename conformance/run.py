"""``make conformance``: the Autobahn|Testsuite cases (run by kosoku) against gunicorn.

Starts the server from gunicorn.conf.py on loopback with ``max_message_size``
raised to the 16 MiB that section 9 sends, runs every case, writes the full
report and a per-section summary.json under reports/conformance/ (git-ignored),
prints the summary, and exits non-zero unless every case, permessage-deflate's
sections 12-13 included, is OK or INFORMATIONAL. conformance/summary.json is
the committed reference the README quotes: copy a run's summary over it to
publish new results. The server's log and temporary files are removed when
every case passed, kept to tell why when one did not.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from tests.servers import GUNICORN, ROOT, ServerProcess, remove_scratch

REPORT_DIR = ROOT / "reports" / "conformance"
SUMMARY = REPORT_DIR / "summary.json"
SERVER_ENV = {"ECHO_MAX_MESSAGE_SIZE": "16MiB", "ECHO_PING_INTERVAL": "0", "WEB_CONCURRENCY": "2"}
# Cases at a time, one per worker: sections 12-13 compress about 1 GB each way.
PARALLEL = 2
PASSING = {"OK", "INFORMATIONAL"}
BEHAVIOURS = ["OK", "NON-STRICT", "FAILED", "INFORMATIONAL", "UNIMPLEMENTED"]


def run_kosoku(
    url: str, report_dir: Path, include: Sequence[str] = (), parallel: int = 1
) -> tuple[dict[str, dict], float]:
    """Run the cases (all, or those matching ``include``) against ``url``: results and seconds."""
    shutil.rmtree(report_dir, ignore_errors=True)
    report_dir.mkdir(parents=True)
    selection = [arg for pattern in include for arg in ("-i", pattern)]
    command = [
        Path(sys.executable).with_name("kosoku"),
        *selection,
        *("-p", str(parallel)),
        *("-o", report_dir),
        url,
    ]
    started = time.monotonic()
    # kosoku's exit status is not the verdict (it counts INFORMATIONAL cases
    # as failed): the report is read instead.
    with open(report_dir / "kosoku.log", "wb") as log:
        subprocess.run(command, check=False, stdout=log, stderr=log)
    elapsed = time.monotonic() - started
    (cases,) = json.loads((report_dir / "index.json").read_text()).values()
    return cases, elapsed


def run_suite() -> tuple[dict[str, dict], float]:
    with ServerProcess(GUNICORN, SERVER_ENV) as server:
        return run_kosoku(server.ws_url, REPORT_DIR, parallel=PARALLEL)


def summarize(cases: dict[str, dict]) -> dict[int, dict]:
    sections: dict[int, dict] = defaultdict(
        lambda: {"cases": 0, "duration_ms": 0, **{b: 0 for b in BEHAVIOURS}}
    )
    for case_id, result in cases.items():
        section = sections[int(case_id.split(".")[0])]
        section["cases"] += 1
        section[result["behavior"]] += 1
        section["duration_ms"] += result.get("duration", 0)
    return dict(sorted(sections.items()))


def problems(cases: dict[str, dict]) -> list[str]:
    found = []
    for case_id, result in cases.items():
        behaviour, close = result["behavior"], result["behaviorClose"]
        if behaviour not in PASSING or close not in PASSING:
            found.append(f"{case_id}: {behaviour} (close {close})")
    return found


def print_table(sections: dict[int, dict], elapsed: float) -> None:
    header = ["Section", "Cases", *BEHAVIOURS, "Time (s)"]
    print(" | ".join(f"{h:>13}" for h in header))
    for number, counts in sections.items():
        cells = [
            number,
            counts["cases"],
            *(counts[b] for b in BEHAVIOURS),
            f"{counts['duration_ms'] / 1000:.2f}",
        ]
        print(" | ".join(f"{c:>13}" for c in cells))
    total = sum(c["cases"] for c in sections.values())
    print(f"{total} cases in {elapsed:.1f} s of wall time")


def main() -> int:
    cases, elapsed = run_suite()
    sections = summarize(cases)
    print_table(sections, elapsed)
    failures = problems(cases)
    SUMMARY.write_text(
        json.dumps(
            {
                "date": date.today().isoformat(),
                "runner": "kosoku " + _version("kosoku"),
                "python": platform.python_version(),
                "server_env": SERVER_ENV,
                "wall_time_s": round(elapsed, 1),
                "sections": {str(n): counts for n, counts in sections.items()},
                "problems": failures,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"report: {REPORT_DIR / 'index.html'}; summary: {SUMMARY.relative_to(ROOT)}")
    for failure in failures:
        print("PROBLEM", failure)
    if failures:
        return 1
    remove_scratch()
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
