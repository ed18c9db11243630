#!/usr/bin/env python3
"""Leads for the adaptive-order benchmark: many countries, corporate and
free-mail addresses (each country's own free-mail, so the sandbox reads the
same country from the address as the lead's column), leads without email,
tiers, junk, and repeats. Deterministic in --seed.

    python3 benches/adaptive/leads.py --n 20000 --seed 1 > history.csv
"""
import argparse
import csv
import random
import sys

# country: (weight, corporate TLD, free-mail domains)
COUNTRIES = {
    "US": (30, "com", ["gmail.com", "yahoo.com", "outlook.com", "icloud.com"]),
    "DE": (20, "de", ["web.de", "gmx.de", "t-online.de"]),
    "GB": (12, "co.uk", ["hotmail.co.uk", "btinternet.com", "yahoo.co.uk"]),
    "FR": (12, "fr", ["orange.fr", "free.fr", "yahoo.fr"]),
    "BR": (8, "com.br", ["uol.com.br", "terra.com.br"]),
    "IN": (8, "in", ["rediffmail.com", "yahoo.in"]),
    "PL": (5, "pl", ["wp.pl", "onet.pl"]),
    "ES": (5, "es", ["hotmail.es", "outlook.es"]),
}
FIRST = ["Ana", "Jonas", "Maria", "Li", "Olivia", "Rahul", "Sophie", "Lukas", "Emma", "Pedro", "Zoe", "Marek"]
LAST = ["Novak", "Schmidt", "Garcia", "Chen", "Singh", "Martin", "Kowalski", "Silva", "Brown", "Dubois"]
COMPANIES = ["acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "tyrell", "nordisk"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    countries = list(COUNTRIES)
    weights = [COUNTRIES[c][0] for c in countries]
    out = csv.writer(sys.stdout)
    out.writerow(["lead_id", "full_name", "email", "company_website", "country", "user_tier", "phone_raw"])
    written = []
    for i in range(args.n):
        if written and rnd.random() < 0.03:
            # A repeat of an earlier lead under a new id.
            row = list(rnd.choice(written))
            row[0] = f"s{args.seed}-{i}"
            out.writerow(row)
            continue
        country = rnd.choices(countries, weights)[0]
        _, tld, free = COUNTRIES[country]
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        company = rnd.choice(COMPANIES) + str(rnd.randrange(500))
        kind = rnd.random()
        if kind < 0.55:
            email = f"{first}.{last}{rnd.randrange(1000)}@{company}.{tld}".lower()
        elif kind < 0.9:
            email = f"{first}{last}{rnd.randrange(100000)}@{rnd.choice(free)}".lower()
        else:
            email = ""
        country_col = country
        r = rnd.random()
        if r < 0.05:
            country_col = country.lower()
        elif r < 0.07:
            country_col = ""
        tier = rnd.choice(["1", "1", "2", "2", "3", ""])
        phone = "" if rnd.random() < 0.92 else rnd.choice(["n/a", "12", "+1 555"])
        name = f"{first} {last}" if rnd.random() > 0.02 else ""
        row = [f"s{args.seed}-{i}", name, email, f"{company}.{tld}", country_col, tier, phone]
        written.append(row)
        out.writerow(row)


if __name__ == "__main__":
    main()
