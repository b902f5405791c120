"""The aggregate report of a verification: one plain value, written as JSON, as JUnit XML for
CI, and as a terminal summary."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from ..replayer import crossprocess
from ..replayer.report import format_text
from ..replayer.segment import STATUSES, VERIFIED

REPORT_VERSION = 1


def aggregate(trace, segments: list[dict], *, wall_seconds: float, workers: int,
              address: str | None, ship: bool) -> dict:
    segments = sorted(segments, key=lambda s: s["segment"])
    counts = {s: sum(1 for r in segments if r["status"] == s) for s in STATUSES}
    work = sum(r.get("seconds", 0) for r in segments)
    replay = sum(r.get("replay_seconds", 0) for r in segments)
    events = sum(r.get("events", 0) for r in segments if r["status"] == VERIFIED)
    cps = trace.checkpoints
    for r in segments:       # the driver's own reports (timeout, lost, skipped) name them too
        if 0 <= r["segment"] < len(cps):
            process = cps[r["segment"]]["process"]
            r.setdefault("process", process)
            r.setdefault("pid", trace.processes[process]["pid"])
    partial = {r.get("process") for r in segments
               if "facts" not in r or r["status"] != VERIFIED}
    checks, divergences = crossprocess.check(
        trace, [r["facts"] for r in segments if "facts" in r],
        whole={p["index"] for p in trace.processes} - partial)
    all_verified = counts[VERIFIED] == len(segments)

    def stat(name: str) -> int:
        return sum(r.get("stats", {}).get(name, 0) for r in segments)
    violations = sum(len(r.get("syscallbuf_invariant_violations", [])) for r in segments)
    # Events no segment covers: a complete trace has none (a process without a checkpoint).
    unreplayable = [p["pid"] for p in trace.unreplayable()] if trace.complete else []
    return {
        "report_version": REPORT_VERSION,
        "trace": trace.path, "uuid": trace.manifest.get("uuid"),
        "command": trace.manifest["command"], "complete_trace": trace.complete,
        "status": "verified" if all_verified and not divergences and not unreplayable
                  else "failed",
        "unreplayable_processes": unreplayable,
        "workers": workers, "address": address, "ship": ship,
        "totals": {"segments": len(segments), **counts,
                   "processes": len(trace.processes),
                   "cross_process_checks": checks,
                   "cross_process_divergences": len(divergences),
                   "buffered_syscalls": stat("buffered_syscalls"),
                   "syscall_breakpoint_checks": stat("syscall_breakpoint_checks"),
                   "syscallbuf_invariant_checks": stat("syscallbuf_invariant_checks"),
                   "syscallbuf_invariant_violations": violations,
                   "events": trace.event_count, "events_verified": events,
                   "wall_seconds": round(wall_seconds, 3),
                   "segment_seconds": round(work, 3), "replay_seconds": round(replay, 3),
                   "speedup": round(work / wall_seconds, 2) if wall_seconds else None},
        "segments": segments,
        "cross_process": divergences,
    }


def write_json(report: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write("\n")


def write_junit(report: dict, path: str) -> None:
    """One test case per segment, and one per cross-process divergence."""
    t = report["totals"]
    cross = len(report.get("cross_process", []))
    failures = t["diverged"] + cross
    skipped = t["skipped"]
    errors = t["segments"] - t["verified"] - t["diverged"] - skipped
    tests = t["segments"] + cross
    suites = ET.Element("testsuites", tests=str(tests), failures=str(failures),
                        errors=str(errors), skipped=str(skipped), time=str(t["wall_seconds"]))
    suite = ET.SubElement(suites, "testsuite", name=f"rrverify {report['trace']}",
                          tests=str(tests), failures=str(failures), errors=str(errors),
                          skipped=str(skipped), time=str(t["wall_seconds"]))
    for s in report["segments"]:
        name = f"segment {s['segment']:05d} (events {s.get('first_event', '?')}-{s.get('end_event', '?')})"
        case = ET.SubElement(suite, "testcase", classname="rrverify.segment", name=name,
                             time=str(s.get("seconds", 0)))
        if s["status"] == "diverged":
            div = s["divergence"]
            el = ET.SubElement(case, "failure", type="divergence",
                               message=f"event {div['event']}: {div['check']}: {div['detail']}")
            el.text = "\n".join(format_text(div))
        elif s["status"] == "skipped":
            ET.SubElement(case, "skipped", message="not run (--fail-fast)")
        elif s["status"] != "verified":
            el = ET.SubElement(case, "error", type=s["status"], message=s.get("error", s["status"]))
            el.text = s.get("error", "")
    for div in report.get("cross_process", []):
        who = ", ".join(f"process {p['pid']}" for p in div["processes"])
        case = ET.SubElement(suite, "testcase", classname="rrverify.cross-process",
                             name=f"{div['check']} ({who})", time="0")
        ET.SubElement(case, "failure", type="divergence", message=div["detail"])
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def summary_lines(report: dict) -> list[str]:
    t = report["totals"]
    lines = []
    for s in report["segments"]:
        if s["status"] == "verified":
            continue
        head = f"segment {s['segment']} (events {s.get('first_event', '?')}-{s.get('end_event', '?')}): {s['status']}"
        if s["status"] == "diverged":
            lines.append(head)
            lines.extend("  " + l for l in format_text(s["divergence"]))
        elif s["status"] != "skipped":
            lines.append(f"{head}: {s.get('error', '')}")
    for div in report.get("cross_process", []):
        lines.append(f"cross-process divergence ({div['check']}): {div['detail']}")
    for pid in report.get("unreplayable_processes", []):
        lines.append(f"trace-error: process {pid} has events but no checkpoint to replay them "
                     f"from")
    bad = {k: t[k] for k in STATUSES if k != VERIFIED and t[k]}
    if t.get("cross_process_divergences"):
        bad["cross-process divergences"] = t["cross_process_divergences"]
    verdict = "verified" if report["status"] == "verified" else "FAILED"
    note = "" if report["complete_trace"] else " (incomplete trace: verified up to its end)"
    procs = t.get("processes", 1)
    lines.append(f"{verdict}: {t['verified']}/{t['segments']} segments of {procs} "
                 f"process{'es' if procs != 1 else ''}, {t['events']} events"
                 f"{note}; " + (", ".join(f"{v} {k}" for k, v in bad.items()) + "; " if bad else "")
                 + f"{t['wall_seconds']:.2f} s wall, {t['segment_seconds']:.2f} s of segment work, "
                 f"speedup {t['speedup']}x on {report['workers']} workers")
    return lines
