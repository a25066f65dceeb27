# Sentinel's stdout callback: ansible's own human-readable output, plus one JSON line per event
# (play, task start, per-host result, diff, stats) that the provision-worker reads as it happens.
# Event lines start with the ASCII record separator (0x1e), so no output of a task can pass for one
# (the worker also refuses event lines that do not parse).
from __future__ import annotations

import json

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

DOCUMENTATION = """
    name: sentinel_jsonl
    type: stdout
    short_description: default output plus JSON event lines for Sentinel
    description:
      - Prints what the default callback prints, and after each event a line made of 0x1e and one JSON object.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    requirements:
      - set as stdout callback in configuration
"""

MARK = "\x1e"


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "sentinel_jsonl"

    def __init__(self):
        super().__init__()
        self._task_name = ""

    def _emit(self, **event):
        self._display.display(MARK + json.dumps(event, default=str, separators=(",", ":")))

    def _host_result(self, result, status, **extra):
        res = result._result
        msg = res.get("msg") if isinstance(res.get("msg"), str) else None
        self._emit(
            event="host",
            host=result._host.get_name(),
            task=self._task_name,
            status=status,
            msg=(msg or "")[:2000] or None,
            **extra,
        )

    # Plays and tasks.
    def v2_playbook_on_play_start(self, play):
        super().v2_playbook_on_play_start(play)
        self._emit(event="play", name=play.get_name().strip())

    def v2_playbook_on_task_start(self, task, is_conditional):
        super().v2_playbook_on_task_start(task, is_conditional)
        self._task_name = task.get_name().strip()
        self._emit(event="task", name=self._task_name)

    def v2_playbook_on_handler_task_start(self, task):
        super().v2_playbook_on_handler_task_start(task)
        self._task_name = task.get_name().strip()
        self._emit(event="task", name=self._task_name, handler=True)

    # Per-host results.
    def v2_runner_on_ok(self, result):
        super().v2_runner_on_ok(result)
        self._host_result(result, "changed" if result._result.get("changed", False) else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        super().v2_runner_on_failed(result, ignore_errors)
        self._host_result(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_unreachable(self, result):
        super().v2_runner_on_unreachable(result)
        self._host_result(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        super().v2_runner_on_skipped(result)
        self._host_result(result, "skipped")

    def v2_on_file_diff(self, result):
        super().v2_on_file_diff(result)
        diff = result._result.get("diff")
        if diff:
            items = diff if isinstance(diff, list) else [diff]
            text = "".join(self._get_diff(d) for d in items if d)
            if text:
                self._emit(event="diff", host=result._host.get_name(), task=self._task_name, diff=text[:65536])

    # The recap: per-host counters, the run's outcome.
    def v2_playbook_on_stats(self, stats):
        super().v2_playbook_on_stats(stats)
        hosts = {}
        for h in sorted(stats.processed.keys()):
            s = stats.summarize(h)
            hosts[h] = {
                "ok": s["ok"],
                "changed": s["changed"],
                "failures": s["failures"],
                "unreachable": s["unreachable"],
                "skipped": s["skipped"],
                "rescued": s["rescued"],
                "ignored": s["ignored"],
            }
        self._emit(event="stats", hosts=hosts)
