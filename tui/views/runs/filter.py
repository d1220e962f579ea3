"""The Runs filter language. Terms are separated by spaces and all must hold; `-` before a term negates it.

- a word matches anywhere: run id, experiment, net, optimizer, dataset, status, device, and every text value of
  the run's config (`leaky` finds `net.activation = "leaky_relu"`; the experiment's description does not count);
- `FIELD:a,b` matches a field that starts with any of the values (numbers: equals), `FIELD=a,b` equals one of them,
  `FIELD!=a`, and `FIELD<x`, `<=`, `>`, `>=` compare numbers;
- FIELD is `status` (s), `exp` (e, experiment), `run` (id), `net` (n), `opt` (o, optimizer), `data` (d, dataset),
  `lr`, `seed`, `device`, or a config key: dotted (`net.activation`) or its last part (`activation`).

`lr:0.01`, `lr<0.1`, `net.activation=leaky_relu`, `optimizer=adam,sgd`, `status:running,stale -exp:lr_sweep-1`.
Statuses are the ones shown (`stale` included: experiments.metrics.display_status).
"""
from __future__ import annotations

import math
import re

from experiments.metrics import display_status
from tui.grouping import format_value, is_ignored

ALIASES = {"status": "status", "s": "status", "exp": "experiment_id", "e": "experiment_id",
           "experiment": "experiment_id", "run": "id", "id": "id", "net": "net", "n": "net", "opt": "optimizer",
           "o": "optimizer", "optimizer": "optimizer", "data": "dataset", "dataset": "dataset", "d": "dataset",
           "lr": "lr", "seed": "seed", "device": "device"}
SEARCH_FIELDS = ("id", "experiment_id", "net", "optimizer", "dataset", "device")
TERM = re.compile(r"^(?P<field>[A-Za-z_][\w.]*)(?P<op>!=|<=|>=|:|=|<|>)(?P<values>.*)$")


class Term:
    def __init__(self, negate: bool, field: str | None, op: str, values: tuple[str, ...]):
        self.negate, self.field, self.op, self.values = negate, field, op, values
        self.numbers = tuple(_number(v) for v in values)

    def matches(self, run: dict, flat: dict, now: float) -> bool:
        if self.field is None:
            return self._word(run, flat, now) != self.negate
        candidates = self._values(run, flat, now)
        hit = any(self._compare(value) for value in candidates)
        return hit != self.negate

    def _word(self, run: dict, flat: dict, now: float) -> bool:
        word = self.values[0]
        for field in SEARCH_FIELDS:
            value = run.get(field)
            if value is not None and word in str(value).lower():
                return True
        if word in (display_status(run, now) or "").lower():
            return True
        return any(isinstance(v, str) and word in v.lower() for k, v in flat.items() if not is_ignored(k))

    def _values(self, run: dict, flat: dict, now: float) -> list:
        field = self.field
        if field in ALIASES.values():
            if field == "status":
                return [display_status(run, now)]
            return [run.get(field)]
        if field in flat:
            return [flat[field]]
        suffix = "." + field
        return [value for key, value in flat.items() if key.endswith(suffix)]

    def _compare(self, value) -> bool:
        if value is None:
            return False
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        text = format_value(value).lower() if not isinstance(value, str) else value.lower()
        for wanted, wanted_number in zip(self.values, self.numbers):
            if self.op in ("<", "<=", ">", ">="):
                if number is None or wanted_number is None:
                    continue
                if {"<": number < wanted_number, "<=": number <= wanted_number, ">": number > wanted_number,
                        ">=": number >= wanted_number}[self.op]:
                    return True
                continue
            if number is not None and wanted_number is not None:
                equal = math.isclose(number, wanted_number, rel_tol=1e-9, abs_tol=1e-12)
            elif self.op == ":":
                equal = text.startswith(wanted)
            else:
                equal = text == wanted
            if equal != (self.op == "!="):
                return True
        return False


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class RunFilter:
    """A parsed filter; `matches(run, flat, now)` (flat: the run's config as dotted keys)."""

    def __init__(self, text: str = ""):
        self.text = text.strip()
        self.terms: list[Term] = []
        for token in self.text.split():
            negate = token.startswith("-") and len(token) > 1
            token = token[1:] if negate else token
            match = TERM.match(token)
            if match:
                field = match["field"].lower()
                values = tuple(v.lower() for v in match["values"].split(",") if v)
                if values:
                    self.terms.append(Term(negate, ALIASES.get(field, match["field"]), match["op"], values))
                continue
            self.terms.append(Term(negate, None, ":", (token.lower(),)))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def matches(self, run: dict, flat: dict | None = None, now: float = 0.0) -> bool:
        flat = flat or {}
        return all(term.matches(run, flat, now) for term in self.terms)
