"""Hardware budgets: ``"p50<=10ms,power<=15W,price<=500"`` on the advisor's predicted figures.

Terms are ``FIGURE OP VALUE UNIT`` as in ``laser optimize --budget``, with the units of that parser for
time, rate and energy, plus watts and US dollars. The figures are the row's own (predicted, or measured
for this machine). A device whose figure is unknown (no TDP or price in its spec sheet) fails the term,
with the reason "not known".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from laser.errors import BudgetError
from laser.optimize.budget import fmt, parse_value

# figure -> (key in a row's figures, unit kind, label)
FIGURES: dict[str, tuple[str, str, str]] = {
    "p50": ("p50_ms", "time", "p50 latency"),
    "latency": ("p50_ms", "time", "p50 latency"),
    "throughput": ("throughput_per_s", "rate", "throughput"),
    "energy": ("joules_per_inference", "energy", "energy per inference"),
    "power": ("watts", "power", "power"),
    "price": ("price_usd", "price", "price"),
}
_LOCAL_UNITS = {"power": {"w": 1.0, "mw": 1e-3, "kw": 1e3}, "price": {"$": 1.0, "usd": 1.0, "": 1.0}}
_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Term:
    figure: str
    op: str
    limit: float  # canonical unit: ms, /s, J, W, US$
    text: str

    @property
    def key(self) -> str:
        return FIGURES[self.figure][0]

    def check(self, value: float | None) -> str | None:
        """None when ``value`` meets the term, else the reason in words."""
        label = FIGURES[self.figure][2]
        if value is None:
            return f"{self.text}: {label} not known"
        ok = {"<=": value <= self.limit, "<": value < self.limit, ">=": value >= self.limit,
              ">": value > self.limit}[self.op]
        return None if ok else f"{self.text}: {label} {_fmt(value, self.figure)}"


def _fmt(value: float, figure: str) -> str:
    kind = FIGURES[figure][1]
    if kind == "power":
        return f"{value:.3g} W"
    if kind == "price":
        return f"${value:,.0f}"
    return fmt(value, kind)


def _value(raw: str, kind: str, term: str) -> float:
    if kind not in _LOCAL_UNITS:
        return parse_value(raw, kind, context=term)
    m = re.match(r"^\$?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*)$", raw.strip())
    if not m:
        raise BudgetError(f"{raw!r} in {term!r} is not a number with a unit; e.g. power<=15W, price<=500")
    unit = m.group(2).strip().lower()
    table = _LOCAL_UNITS[kind]
    if unit not in table:
        raise BudgetError(f"unknown unit {m.group(2)!r} in {term!r}; use one of: "
                          + ", ".join(u or "(none)" for u in table))
    return float(m.group(1)) * table[unit]


def parse(text: str | None) -> tuple[Term, ...]:
    """The terms of a budget ('' or None: no constraint)."""
    terms = []
    for raw in (t.strip() for t in re.split(r"[,;]", text or "")):
        if not raw:
            continue
        m = _TERM.match(raw)
        if not m:
            raise BudgetError(f"cannot read budget term {raw!r}; write FIGURE<=VALUE UNIT, e.g. p50<=10ms, "
                              f"power<=15W, price<=500; known figures: {', '.join(FIGURES)}")
        name = m.group(1).lower()
        if name not in FIGURES:
            raise BudgetError(f"unknown budget figure {name!r} in {raw!r}; known: {', '.join(FIGURES)}")
        terms.append(Term(name, m.group(2), _value(m.group(3), FIGURES[name][1], raw), raw.replace(" ", "")))
    return tuple(terms)
