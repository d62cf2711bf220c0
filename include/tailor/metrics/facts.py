"""Key facts of an answer: the numbers (with their units) and model codes a correct answer must repeat.

BERTScore barely notices a wrong number (one token out of twenty), so the bake-off also reports
:func:`key_fact_match`: the share of the reference answer's key facts found in the generated answer.

Normal form (what :func:`key_facts` returns):

* numbers: ``-`` for negatives (also ``−``), no thousands separators (``3,000`` -> ``3000``), no trailing
  decimal zeros (``2.50`` -> ``2.5``); number words zero..twenty and the tens are read when a unit follows
  (``two minutes`` -> ``2 minutes``);
* a unit, when one follows, after one space, lower-case and canonical (``°C``/``degrees C``/``ºC`` -> ``°c``,
  ``mins``/``min`` -> ``minutes``, ``r/min`` -> ``rpm``, ``m³/h`` -> ``m3/h``, ``30%`` -> ``30 %``). Single
  letters that are also words are units only in their SI case (``A``, ``N``); ``Nm`` (torque) is ``n·m``, ``nm``
  stays nanometres;
* ranges and pairs share the unit written once: ``20 to 180 rpm``, ``20-180 rpm``, ``12/7 °C`` ->
  ``20 rpm``, ``180 rpm`` / ``12 °c``, ``7 °c`` (``to``, ``-``, ``–``, ``/``, ``and``, ``or``);
* model and part codes, lower-case as written, each one whole token: ``VM-200`` -> ``vm-200``,
  ``TW-AD340-FLT-02`` -> ``tw-ad340-flt-02``, ``E-14`` -> ``e-14``, ``R513A`` -> ``r513a``, ``IP65``/``IP 65`` ->
  ``ip65``. A hyphen-joined token that starts with a letter and has a digit, or upper-case letters directly
  followed by digits; trailing lower-case words are not part of it (``IP65-rated`` -> ``ip65``). Its digits are
  not numbers of their own (``VM-200`` yields no ``-200``, ``TW-AD340-FLT-02`` no ``2``), and a code matches only
  the same whole code (``TW-AD340`` does not answer ``TW-AD340-FLT-02``);
* long references: numbered-list and step markers at the start of a line (``1.``, ``2)``, ``(3)``,
  ``Step 4:``) are structure, not facts (an answer written as bullets loses nothing); a range joiner never spans
  a line break (``Quantity: 4`` then ``- 400 V`` is not ``4 v``); thin-space digit groups read like commas
  (``1 450 kg`` with U+202F or U+2009 -> ``1450 kg``).

Not handled, on purpose: unit conversion (``3 kW`` is not ``3000 W``), decimal commas (``2,5 bar`` reads as
``2`` and ``5 bar``), numbers written as words without a unit, dates, codes joined by ``/`` (``TW-1/2``).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_UNITS: dict[str, tuple[str, ...]] = {
    # canonical: spellings (matched case-insensitively unless listed in _CASE_SENSITIVE)
    "°c": ("°c", "° c", "ºc", "º c", "℃", "degrees c", "degree c", "deg c", "degc", "degrees celsius",
           "degree celsius", "celsius"),
    "°f": ("°f", "° f", "ºf", "℉", "degrees f", "degree f", "deg f", "degf", "degrees fahrenheit", "fahrenheit"),
    "°": ("°", "º", "degrees", "degree", "deg"),
    "rpm": ("rpm", "r/min", "rev/min", "revolutions per minute", "1/min"),
    "bar": ("bar", "bars", "barg"),
    "mbar": ("mbar",),
    "psi": ("psi",),
    "pa": ("pa", "pascal", "pascals"),
    "hpa": ("hpa",),
    "kpa": ("kpa",),
    "mpa": ("mpa",),
    "v": ("v", "volt", "volts", "vac", "vdc"),
    "kv": ("kv",),
    "a": ("A", "amp", "amps", "ampere", "amperes"),
    "ma": ("mA", "milliamp", "milliamps"),
    "w": ("w", "watt", "watts"),
    "kw": ("kw", "kilowatt", "kilowatts"),
    "mw": ("MW", "megawatt", "megawatts"),
    "kva": ("kva",),
    "kwh": ("kwh",),
    "hz": ("hz", "hertz"),
    "khz": ("khz", "kilohertz"),
    "mhz": ("mhz", "megahertz"),
    "ohm": ("ohm", "ohms", "Ω"),
    "kohm": ("kohm", "kΩ", "kiloohm", "kiloohms"),
    "megaohm": ("megaohm", "megaohms", "megohm", "megohms", "mohm", "MΩ"),
    "nm": ("nm", "nanometre", "nanometres", "nanometer", "nanometers"),
    "n·m": ("Nm", "N·m", "N m", "newton metre", "newton metres", "newton meters"),
    "µm": ("µm", "μm", "um", "micron", "microns", "micrometre", "micrometres", "micrometer", "micrometers"),
    "mm": ("mm", "millimetre", "millimetres", "millimeter", "millimeters"),
    "cm": ("cm", "centimetre", "centimetres", "centimeter", "centimeters"),
    "m": ("m", "metre", "metres", "meter", "meters"),
    "km": ("km", "kilometre", "kilometres", "kilometer", "kilometers"),
    "in": ("inch", "inches"),
    "m2": ("m2", "m²", "square metres", "square meters"),
    "m3": ("m3", "m³", "cubic metres", "cubic meters"),
    "m/s": ("m/s", "metres per second", "meters per second"),
    "mm/s": ("mm/s",),
    "m/min": ("m/min", "metres per minute", "meters per minute"),
    "mm/min": ("mm/min",),
    "m3/h": ("m3/h", "m³/h", "m3/hr", "m³/hr", "cubic metres per hour", "cubic meters per hour"),
    "m3/min": ("m3/min", "m³/min"),
    "l/min": ("l/min", "lpm"),
    "l/h": ("l/h",),
    "t/h": ("t/h",),
    "kg/h": ("kg/h",),
    "l": ("l", "litre", "litres", "liter", "liters"),
    "ml": ("ml", "millilitre", "millilitres", "milliliter", "milliliters"),
    "kg": ("kg", "kgs", "kilogram", "kilograms", "kilo", "kilos"),
    "g": ("g", "gram", "grams"),
    "t": ("t", "tonne", "tonnes", "ton", "tons"),
    "kn": ("kn", "kilonewton", "kilonewtons"),
    "n": ("N", "newton", "newtons"),
    "db(a)": ("db(a)", "dba"),
    "db": ("db", "decibel", "decibels"),
    "%": ("%", "percent", "per cent"),
    "ppm": ("ppm",),
    "ms": ("ms", "millisecond", "milliseconds"),
    "seconds": ("s", "sec", "secs", "second", "seconds"),
    "minutes": ("min", "mins", "minute", "minutes"),
    "hours": ("h", "hr", "hrs", "hour", "hours"),
    "days": ("day", "days"),
    "weeks": ("week", "weeks"),
    "months": ("month", "months"),
    "years": ("year", "years"),
    "cycles": ("cycle", "cycles"),
}
#: Spellings that are units only in exactly this case ("5 A" is 5 amperes, "5 a" is not).
_CASE_SENSITIVE = {"A", "mA", "MW", "N", "Nm", "N·m", "N m", "MΩ"}
_CANONICAL = {spelling.lower(): unit for unit, spellings in _UNITS.items() for spelling in spellings
              if spelling not in _CASE_SENSITIVE}
_CANONICAL_EXACT = {spelling: unit for unit, spellings in _UNITS.items() for spelling in spellings
                    if spelling in _CASE_SENSITIVE}
_SPELLINGS = sorted({s for spellings in _UNITS.values() for s in spellings}, key=len, reverse=True)
_UNIT = "|".join(re.escape(s).replace(r"\ ", r"\s+") for s in _SPELLINGS)

_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}
_NUMBER = (r"(?:(?<![\w.])(?P<sign>[-−]))?"
           r"(?<![\w.])(?P<num>\d{1,3}(?:[,\u2009\u202f]\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?"
           rf"|(?i:{'|'.join(sorted(_WORDS, key=len, reverse=True))})(?=\s*(?:{_UNIT})(?![\w³²]))"
           r")")
# A unit may be glued to the number ("3000rpm", "30%"); without one, the number must end a word ("2nd" is none).
_FACT = re.compile(rf"{_NUMBER}(?:[ \t\u00a0\u202f]*(?P<unit>{_UNIT})(?![\w³²/-])|(?![\w]))", re.IGNORECASE)
# IP ratings (also with a space), else a whole hyphen-joined alphanumeric token (atomic: a code is never cut
# short to fit); :func:`_code` decides whether the token is a code. "/" around it makes it a unit ("m3/h").
_CODE = re.compile(r"(?<![\w/-])(?:(?P<ip>IP)\s?(?P<ipnum>\d{2})(?![\w/-])"
                   r"|(?P<token>(?>[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*))(?![\w/]))", re.IGNORECASE)
_PLAIN_CODE = re.compile(r"[A-Z][A-Za-z]{0,5}\d[A-Za-z0-9]*")  # R513A, M8, AD340: upper-case letters, then digits
# Numbered-list and step markers at the start of a line ("1.", "2)", "(3)", "Step 4:") are structure, not facts.
_LIST_MARKER = re.compile(r"^[ \t]*(?:step[ \t]+\d{1,3}[ \t]*[:.)]|\(?\d{1,3}[.)])(?=\s)",
                          re.IGNORECASE | re.MULTILINE)
# Joiners of a range or pair, within one line (a list's next line never shares the previous line's unit).
_RANGE_JOINER = re.compile(r"^[ \t\u00a0\u202f]*(?:-|–|—|/|to|and|or|up to)[ \t\u00a0\u202f]*$", re.IGNORECASE)


def _normalise_number(raw: str, sign: str | None) -> str:
    raw = raw.replace(",", "").replace("\u2009", "").replace("\u202f", "")
    if raw.lower() in _WORDS:
        raw = str(_WORDS[raw.lower()])
    try:
        value = Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the regex only lets digits through
        return raw
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if sign and text.strip("0.") != "":
        text = "-" + text
    return text


def _normalise_unit(raw: str | None) -> str | None:
    if raw is None:
        return None
    spaced = re.sub(r"\s+", " ", raw)
    if spaced in _CANONICAL_EXACT:
        return _CANONICAL_EXACT[spaced]
    return _CANONICAL.get(spaced.lower())


def _code(token: str) -> str | None:
    """The model or part code a hyphen-joined token spells, or None (a word, a range, a number with a unit).

    Trailing lower-case word segments are not part of it (``IP65-rated``, ``VM-200-based``); what is left is a
    code when it starts with a letter, has a digit, and has a hyphen (``TW-AD340-FLT-02``, ``E-14``, ``hp-450``)
    or starts upper-case (``R513A``, ``M8``; a lower-case ``m3`` is a unit).
    """
    segments = token.split("-")
    while len(segments) > 1 and segments[-1].isalpha() and segments[-1].islower():
        segments.pop()
    code = "-".join(segments)
    if not code[0].isalpha() or not any(c.isdigit() for c in code):
        return None
    if "-" not in code and not _PLAIN_CODE.fullmatch(code):
        return None
    return code


def _codes(text: str) -> tuple[set[str], str]:
    """Model codes of ``text`` and the text with them blanked out (so their digits are not read as numbers)."""
    found: set[str] = set()

    def blank(match: re.Match[str]) -> str:
        if match.group("ip"):
            found.add("ip" + match.group("ipnum"))
            return " " * len(match.group(0))
        token = match.group("token")
        code = _code(token)
        if code is None:
            return token
        found.add(code.lower())
        return " " * len(code) + token[len(code) :]

    return found, _CODE.sub(blank, text)


def key_facts(text: str) -> set[str]:
    """The normalised numbers-with-units and model codes of ``text`` (see the module doc for the normal form)."""
    if not text:
        return set()
    text = text.replace("\u2212", "-")
    facts, rest = _codes(text)
    rest = _LIST_MARKER.sub(lambda marker: " " * len(marker.group(0)), rest)
    matches = list(_FACT.finditer(rest))
    units: list[str | None] = []
    for match in matches:
        unit = _normalise_unit(match.group("unit"))
        if match.group("unit") and unit is None:  # a case-sensitive spelling in the wrong case: "5 a"
            unit = None
        units.append(unit)
    # "20 to 180 rpm", "12/7 °C": a bare number joined to the next one takes its unit (right to left: chains).
    for i in range(len(matches) - 2, -1, -1):
        if units[i] is None and units[i + 1] is not None:
            between = rest[matches[i].end() : matches[i + 1].start()]
            if _RANGE_JOINER.match(between):
                units[i] = units[i + 1]
    for match, unit in zip(matches, units, strict=True):
        raw = match.group("num")
        if not raw[0].isdigit() and unit is None:
            continue  # a number word is a fact only with a unit ("one of the", "two minutes")
        number = _normalise_number(raw, match.group("sign"))
        facts.add(f"{number} {unit}" if unit else number)
    return facts


def fact_coverage(answer: str, reference: str) -> tuple[list[str], list[str]]:
    """(found, missing): ``reference``'s key facts that ``answer`` has and has not, sorted (the rule of
    :func:`key_fact_match`: a bare number in the reference is found with any unit in the answer)."""
    found = key_facts(answer or "")
    numbers_found = {fact.split(" ", 1)[0] for fact in found}
    hits: list[str] = []
    misses: list[str] = []
    for fact in sorted(key_facts(reference)):
        (hits if fact in found or (" " not in fact and fact in numbers_found) else misses).append(fact)
    return hits, misses


def key_fact_match(answer: str, reference: str) -> float | None:
    """Share of ``reference``'s key facts present in ``answer``; ``None`` when the reference has none.

    A fact matches when the answer has it in the same normal form, or, for a bare number in the reference,
    when the answer has that number with any unit ("between 4 and 12" is answered by "pH 4 to 12"; "12 rpm"
    answers "12"). A number with a unit in the reference is not matched by the bare number.
    """
    hits, misses = fact_coverage(answer, reference)
    return len(hits) / (len(hits) + len(misses)) if hits or misses else None
