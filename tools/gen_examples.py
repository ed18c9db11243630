#!/usr/bin/env python3
"""Generates examples/leads.csv: a few hundred realistic, messy leads.

Run: pip install phonenumbers && python3 tools/gen_examples.py
Deterministic (fixed seed). Phones come from Google's libphonenumber example
numbers (the `phonenumbers` port) with other subscriber digits, written the
ways people write them; some are broken on purpose. The file has a UTF-8 BOM,
CRLF line ends, quoted fields with commas, quotes and newlines, countries as
codes and names in any case, extra columns, and three structurally broken
rows (wrong field count, an unparseable tier, a bad timestamp) that the run
turns into rejects.
"""
import csv
import io
import random

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

rng = random.Random(20261123)

COUNTRIES = {
    "US": ("United States", "USA"), "GB": ("United Kingdom", "GBR"), "DE": ("Germany", "DEU"),
    "FR": ("France", "FRA"), "ES": ("Spain", "ESP"), "IT": ("Italy", "ITA"), "NL": ("Netherlands", "NLD"),
    "BR": ("Brazil", "BRA"), "MX": ("Mexico", "MEX"), "IN": ("India", "IND"), "JP": ("Japan", "JPN"),
    "AU": ("Australia", "AUS"), "CA": ("Canada", "CAN"), "ZA": ("South Africa", "ZAF"),
    "SG": ("Singapore", "SGP"), "AR": ("Argentina", "ARG"), "SE": ("Sweden", "SWE"),
    "PL": ("Poland", "POL"), "KR": ("South Korea", "KOR"), "IE": ("Ireland", "IRL"),
    "CH": ("Switzerland", "CHE"), "NG": ("Nigeria", "NGA"), "AE": ("United Arab Emirates", "ARE"),
}
WEIGHTS = {"US": 30, "GB": 12, "DE": 8, "FR": 6, "IN": 6, "BR": 5, "CA": 5, "AU": 4}
FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Emma", "Fatima", "Giulia", "Hiro", "Isabel", "Jonas",
         "Kwame", "Lena", "María", "Noah", "Olivia", "Priya", "Quentin", "Rosa", "Sven", "Tomás",
         "Uma", "Viktor", "Wei", "Ximena", "Yusuf", "Zoë", "O'Brien", "Anne-Marie", "José", "Søren"]
LAST = ["Smith", "Müller", "García", "Rossi", "Dubois", "Tanaka", "Silva", "Kowalski", "O'Neil",
        "Nguyen", "Johansson", "Okafor", "Patel", "Kim", "Brown", "van der Berg", "López", "Schmidt",
        "Murphy", "Costa", "Novak", "Singh", "Cohen", "Fischer", "Haddad"]
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella, Inc.", "Stark Industries", "Wayne Enterprises",
             "Hooli", "Pied Piper", "Vandelay Industries", "Soylent \"Green\" Co", "Tyrell Corp",
             "Cyberdyne Systems", "Wonka Industries", "Aperture Science", "Massive Dynamic",
             "Nordisk Data AB", "Müller & Söhne GmbH", "Société Générale de Test", "Rossi S.p.A.",
             "Tanaka K.K.", "Oceanic Airlines", "Blue Sun", "Monarch Solutions", "Dunder Mifflin"]
SOURCES = ["webinar", "linkedin", "trade-show", "referral", "", "cold-list"]


def pick_country():
    codes = list(COUNTRIES)
    weights = [WEIGHTS.get(c, 2) for c in codes]
    return rng.choices(codes, weights)[0]


def phone_for(region):
    kind = rng.choice([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE])
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    nsn = str(example.national_number)
    for _ in range(50):
        keep = max(3, len(nsn) // 2)
        digits = nsn[:keep] + "".join(str(rng.randrange(10)) for _ in nsn[keep:])
        candidate = phonenumbers.parse("+%d%s" % (example.country_code, digits))
        if phonenumbers.is_valid_number(candidate):
            return candidate
    return example


def written(number, region):
    style = rng.random()
    if style < 0.30:
        return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    if style < 0.55:
        return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    if style < 0.70:
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if style < 0.80:
        s = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        return "".join(c for c in s if c.isdigit())
    if style < 0.86:
        s = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
        return s.replace(" ", ".").replace("-", ".")
    if style < 0.90:
        return "00" + phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:]
    broken = rng.choice(["", "n/a", "555-0100", "call reception", "+1 (000) 000-0000", "12345",
                         phonenumbers.format_number(number, PhoneNumberFormat.E164)[:-3]])
    return broken


def country_as_written(code):
    name, alpha3 = COUNTRIES[code]
    return rng.choice([code, code, code.lower(), alpha3, name, name.upper(), ""])


rows = []
for i in range(400):
    region = pick_country()
    first, last = rng.choice(FIRST), rng.choice(LAST)
    company = rng.choice(COMPANIES)
    domain = "".join(c for c in company.lower().split(",")[0].split(" ")[0] if c.isalnum()) + rng.choice([".com", ".io", ".de", ".co.uk"])
    email = f"{first.lower()}.{last.lower().replace(' ', '')}@{domain}".replace("'", "")
    number = phone_for(region)
    country = country_as_written(region)
    has_id = rng.random() < 0.8
    notes = rng.choice(["", "", "", "asked for a demo, call after 3pm", "prefers email,\nnot phone", "said \"maybe next quarter\""])
    day = 1 + i % 3
    rows.append({
        "Lead_ID": f"L{10000 + i}" if has_id else "",
        "First Name": first, "Last Name": last,
        "Full_Name": "" if rng.random() < 0.5 else f"{first} {last}",
        "EMAIL": email, "Company": company, "company_website": domain,
        "phone_raw": written(number, region), "Country": country,
        "user_tier": str(rng.choice([1, 1, 2, 2, 3])),
        "organization_id": rng.choice(["org_acme", "org_globex", "org_initech"]),
        "received_at": f"2026-11-{20 + day:02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
        "utm_source": rng.choice(SOURCES), "notes": notes,
    })

buf = io.StringIO()
w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\r\n")
w.writeheader()
for i, r in enumerate(rows):
    w.writerow(r)
    if i == 99:  # a row with a field missing
        buf.write("L99001,Broken,Row,,broken@example.com,Acme Corp,acme.com,+1 415 555 0132,US,1\r\n")
    if i == 199:  # a tier that is not a number
        buf.write("L99002,Gold,Tier,,gold@example.com,Globex,globex.com,+44 20 7183 8750,GB,gold,org_acme,2026-11-21T10:00:00Z,webinar,\r\n")
    if i == 299:  # a date nobody can read
        buf.write("L99003,Some,Day,,someday@example.com,Initech,initech.com,+49 30 123456,DE,2,org_acme,next tuesday,referral,\r\n")

with open("examples/leads.csv", "w", encoding="utf-8-sig", newline="") as f:
    f.write(buf.getvalue())
print(f"wrote examples/leads.csv: {len(rows)} leads + 3 broken rows")
