#!/usr/bin/env python3
"""The ceiling of the adaptive-order benchmark: the expected spend per found
phone of the priority order and of the best order for each segment, given
the sandbox's true rates (sandbox.toml) and the mix of leads.py (each
country's share; corporate 55%, free-mail 35%, no email 10%). No order can
pay less than the second figure on these providers.

    python3 benches/adaptive/oracle.py
"""
import itertools
import os
import sys
import tomllib

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from leads import COUNTRIES  # noqa: E402

with open(os.path.join(here, "sandbox.toml"), "rb") as f:
    config = tomllib.load(f)
sandbox = config["sandbox"]
providers = sorted(config["providers"], key=lambda p: p["priority"])
KINDS = {"corporate": 0.55, "free": 0.35, "none": 0.10}


def rate(name, country, kind):
    own = sandbox.get("providers", {}).get(name, {})
    by_country = own.get("hit_rate_by_country", {})
    r = by_country.get(country, own.get("hit_rate", sandbox.get("hit_rate_by_country", {}).get(country, sandbox.get("hit_rate", 0.5))))
    factor = own.get("email_kind_factor", sandbox.get("email_kind_factor", {})).get(kind, 1.0)
    return r * factor


def spend(order, p):
    reach, total = 1.0, 0.0
    for q in order:
        total += reach * (q.get("cost_per_call_usd", 0) + p[q["name"]] * q.get("cost_per_hit_usd", 0))
        reach *= 1 - p[q["name"]]
    return total, 1 - reach


priority = best = found = 0.0
for country, (weight, _, _) in COUNTRIES.items():
    for kind, share in KINDS.items():
        p = {q["name"]: rate(q["name"], country, kind) for q in providers}
        w = weight * share
        s, f = spend(providers, p)
        priority += w * s
        best += w * min(spend(o, p)[0] for o in itertools.permutations(providers))
        found += w * f
print(f"priority order: ${priority / found:.4f} per found phone")
print(f"best order per segment: ${best / found:.4f} per found phone ({100 * (1 - best / priority):.1f}% less)")
