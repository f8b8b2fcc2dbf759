"""A deliberately naive reading of DESIGN.md's semantics, for property tests of the engine.

It sees each user's whole history at once, sorted by (ts, event_id), with no watermarks, buffers,
timers or pruning: whatever the streaming engine does must come out the same as this.
"""

from __future__ import annotations

from collections import defaultdict

from udfs.filters import compile_filter
from udfs.model import EngineEvent


def oracle_fires(rules, events) -> list[tuple]:
    by_user = defaultdict(list)
    for e in events:
        by_user[e.user_id].append(EngineEvent.from_event(e))
    out = []
    for user, history in by_user.items():
        history.sort(key=lambda e: (e.ts, e.event_id))
        for rule in rules:
            out.extend((rule.id, user, t, ids) for t, ids in _rule(rule, history))
    return sorted(out)


def _cooled(rule, matches):
    last = None
    for trigger_ts, ids in matches:
        if rule.cooldown and last is not None and trigger_ts < last + rule.cooldown:
            continue
        last = trigger_ts
        yield trigger_ts, ids


def _rule(rule, history):
    p = rule.pattern
    if p.type == "count":
        return _cooled(rule, _count(p, history))
    if p.type == "sequence":
        return _cooled(rule, _sequence(p, history))
    return _cooled(rule, _deadline(p, history))


def _count(p, history):
    match = compile_filter(p.match)
    used = set()
    for i, e in enumerate(history):
        if not match(e):
            continue
        window = [
            j
            for j in range(i + 1)
            if j not in used and match(history[j]) and e.ts - history[j].ts < p.within
        ]
        if len(window) >= p.threshold:
            used.update(window)
            yield e.ts, tuple(history[j].event_id for j in window)


def _sequence(p, history):
    steps = [compile_filter(s) for s in p.steps]
    used = set()
    for i, e in enumerate(history):
        if not steps[-1](e):
            continue
        found = None
        for start in range(i + 1):
            if start in used or (len(steps) > 1 and start == i):
                continue
            if len(steps) == 1:
                found = [i] if start == i else None
                if found:
                    break
                continue
            if not steps[0](history[start]) or e.ts - history[start].ts >= p.within:
                continue
            chain, pos = [start], start + 1
            for step in steps[1:-1]:
                while pos < i and (pos in used or not step(history[pos])):
                    pos += 1
                if pos >= i:
                    chain = None
                    break
                chain.append(pos)
                pos += 1
            if chain is not None:
                found = chain + [i]
                break
        if len(steps) == 1 and found is None:
            found = [i]
        if found:
            used.update(found)
            yield e.ts, tuple(history[j].event_id for j in found)


def _deadline(p, history):
    start = compile_filter(p.start)
    if p.type == "absence":
        stop, span, moves = compile_filter(p.missing), p.within, False
    else:
        stop = compile_filter(p.unless) if p.unless else (lambda e: False)
        span, moves = p.gap, True
    deadline = start_id = None
    for e in history:
        if deadline is not None and deadline <= e.ts:
            yield deadline, (start_id,)
            deadline = None
        if stop(e):
            deadline = None
        elif start(e):
            deadline, start_id = e.ts + span, e.event_id
        elif moves and deadline is not None:
            deadline = e.ts + span
    if deadline is not None:
        yield deadline, (start_id,)
