"""How an attempt ended, and what that means for its job: a pure pass the scheduler applies.

Interruptions (spot notice, a lost Ray worker or node, a stopping scheduler) requeue the job
without spending retries: a lost worker or node is NODE_LOST, unless the job ran on spot
capacity, where losing the machine is what a spot interruption is (SPOT_INTERRUPTED); failures spend one and follow the retry rules (AWS Batch
evaluateOnExit: the first matching rule decides; no match retries while retries remain).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from batch.spec import Definition, rule_action

INTERRUPTED = "SPOT_INTERRUPTED"
NODE_LOST = "NODE_LOST"
REQUEUED = (INTERRUPTED, NODE_LOST)  # requeued without spending a retry


@dataclass(frozen=True)
class Outcome:
    """One finished attempt: reason, exit code or signal, times, useful and lost seconds."""

    reason: str  # SUCCEEDED EXIT_CODE OOM KILLED TIMEOUT SPOT_INTERRUPTED NODE_LOST CANCELLED START_FAILED
    detail: str
    code: int | None
    signal: int | None
    started: float
    ended: float
    useful: float
    lost: float

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)

    def attempt_fields(self, node: str | None) -> dict[str, Any]:
        return {
            "exit_code": self.code,
            "signal": self.signal,
            "reason": self.reason,
            "detail": self.detail,
            "started_at": self.started,
            "ended_at": self.ended,
            "useful_s": self.useful,
            "lost_s": self.lost,
            "node": node,
        }


def classify(result: dict[str, Any], d: Definition, dispatched: float) -> Outcome:
    """Turn what the attempt's Ray task returned (or how it was lost) into an Outcome."""
    started = result.get("started_at") or dispatched
    ended = result.get("ended_at") or time.time()
    duration = max(0.0, ended - started)
    code, sig = result.get("code"), result.get("signal")
    stop = result.get("stop")
    detail = ""
    if "lost" in result:
        node_lost = result.get("node_lost") and not result.get("spot")
        reason, detail = (NODE_LOST if node_lost else INTERRUPTED), result["lost"]
    elif "start_error" in result:
        reason, detail = "START_FAILED", result["start_error"]
    elif stop == "CANCEL":
        reason, detail = "CANCELLED", "cancelled by request"
    elif stop in ("INTERRUPT", "STOP"):
        reason = INTERRUPTED
        detail = "spot interruption" if stop == "INTERRUPT" else "the scheduler stopped"
    elif stop == "TIMEOUT":
        reason, detail = "TIMEOUT", f"attempt ran longer than timeout_s={d.timeout_s:g}"
    elif result.get("runtime_reason") == "SUCCEEDED" and code == 0:
        reason = "SUCCEEDED"
    else:
        reason = result.get("runtime_reason") or "EXIT_CODE"
        detail = f"exit code {code}" if code is not None else f"killed by signal {sig}"
        if reason == "OOM":
            detail += " (out of memory)"
    # Work counts as useful up to the newest checkpoint this attempt wrote; a success keeps all.
    ck = result.get("last_checkpoint")
    if reason == "SUCCEEDED":
        useful = duration
    elif ck is not None and ck > started:
        useful = min(ck, ended) - started
    else:
        useful = 0.0
    return Outcome(reason, detail, code, sig, started, ended, useful, max(0.0, duration - useful))


def transition(o: Outcome, job: dict[str, Any], d: Definition) -> dict[str, Any]:
    """The job's new fields after this attempt; status SUCCEEDED still needs the output commit."""
    res = dict(job["result"] or {})
    values: dict[str, Any] = {
        "control": None,
        "useful_s": float(job["useful_s"]) + o.useful,
        "total_s": float(job["total_s"]) + o.duration,
        "result": res,
    }
    if o.reason in REQUEUED:
        values["status"] = "RUNNABLE"
        values["status_reason"] = f"requeued after {o.detail}"
        values["interruptions"] = int(job["interruptions"]) + 1
        res["lost_s"] = [*res.get("lost_s", []), round(o.lost, 3)]
    elif o.reason == "CANCELLED":
        values["status"], values["status_reason"] = "CANCELLED", o.detail
    elif o.reason == "SUCCEEDED":
        values["status"], values["status_reason"] = "SUCCEEDED", ""
    else:
        failures = int(job["failures"]) + 1
        values["failures"] = failures
        action = rule_action(d.retry_rules, o.code, o.reason, o.detail)
        if action != "EXIT" and failures <= d.retries:
            values["status"] = "RUNNABLE"
            values["status_reason"] = f"retrying after {o.reason} ({o.detail})"
        else:
            why = "a retry rule said EXIT" if action == "EXIT" else f"{failures} failed attempt(s)"
            values["status"] = "FAILED"
            values["status_reason"] = f"{o.reason}: {o.detail}; {why}"
    if job["control"] == "CANCEL" and values["status"] == "RUNNABLE":
        values["status"], values["status_reason"] = "CANCELLED", "cancelled by request"
    return values
