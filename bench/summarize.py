"""Helpers the bench/ part scripts use to turn their per-round JSON records into the
markdown tables of BENCHMARKS.md: min / median / max per figure, ratios, goals."""
import json
import statistics


def load(path):
    """The JSON records of a part, one per line (lines that are not JSON are skipped)."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def values(records, key, **match):
    """The non-null values of `key` in the records whose fields equal `match`."""
    vals = []
    for r in records:
        if all(r.get(k) == v for k, v in match.items()) and r.get(key) is not None:
            vals.append(float(r[key]))
    return vals


def mmm(vals):
    """(min, median, max), or None when there are no values."""
    if not vals:
        return None
    return min(vals), statistics.median(vals), max(vals)


def fmt(x, digits=None):
    if x is None:
        return "–"
    if digits is None:
        digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return f"{x:,.{digits}f}"


def row(label, vals, unit="", digits=None, n=True):
    """A markdown row: label | min | median | max | n (runs with a value)."""
    m = mmm(vals)
    cells = [label + (f" ({unit})" if unit else "")]
    cells += ["–"] * 3 if m is None else [fmt(v, digits) for v in m]
    if n:
        cells.append(str(len(vals)))
    return "| " + " | ".join(cells) + " |"


HEADER = "| figure | min | median | max | runs |\n| --- | ---: | ---: | ---: | ---: |"


def paired_ratio(records, key, a, b, who="who"):
    """Per round, value(a) / value(b) for rounds that have both."""
    by_round = {}
    for r in records:
        if r.get(key) is None:
            continue
        by_round.setdefault(r["round"], {})[r[who]] = float(r[key])
    return [d[a] / d[b] for d in by_round.values() if a in d and b in d and d[b] != 0]


def goal(text, met):
    if met is None:
        return f"- Goal: {text}: **not measured**"
    return f"- Goal: {text}: **{'met' if met else 'not met'}**"


def rel(text):
    """Commands as a reader types them: the build's and the run's paths shortened."""
    import os
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = text.replace(root + "/", "")
    text = re.sub(r"/work/[^ ]*/target/release/", "target/release/", text)
    return re.sub(r"/tmp/tmp\.[A-Za-z0-9]+", "$TMP", text)
