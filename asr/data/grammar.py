"""An assistant-command grammar: short spoken commands with open slots.

`sample(rng) -> (text, intent, slots)` draws one command. Intents are drawn with fixed weights;
slot values are drawn with a Zipf-like law (p ~ 1 / rank) over a fixed, seeded ranking of each
slot list, so frequent names recur and rare names appear only a few times in a large corpus —
the situation contextual biasing is meant for. Numbers are spoken as words; every text is
already normalized (lowercase a-z, apostrophe, single spaces) and encodable by asr.text.

Slot lists live in asr/data/slots/*.txt (one value per line). Contacts are built from them:
every first name alone plus CONTACT_FULL_NAMES first+surname pairs drawn with a fixed seed.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from asr.text import encode, normalize

SLOT_DIR = Path(__file__).parent / "slots"
CONTACT_FULL_NAMES = 400
ZIPF_EXPONENT = 1.0
_LIST_SEED = 20261121  # fixes the contact pairs and the rank order of every list

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
DIGIT_WORDS = _ONES[:10]


def number_words(n: int) -> str:
    """English words for 0 <= n < 1000 ("one hundred twenty five")."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words supports 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))


def _read(name: str) -> list[str]:
    lines = (SLOT_DIR / f"{name}.txt").read_text().splitlines()
    vals = [normalize(v) for v in lines if v.strip()]
    return list(dict.fromkeys(vals))  # dedupe, keep order


@lru_cache(maxsize=1)
def slot_lists() -> dict[str, tuple[str, ...]]:
    """Every slot list, each in its fixed Zipf rank order (index 0 is the most frequent)."""
    rng = np.random.default_rng(_LIST_SEED)
    first, last = _read("first_names"), _read("surnames")
    pairs: set[str] = set()
    while len(pairs) < CONTACT_FULL_NAMES:
        pairs.add(f"{first[rng.integers(len(first))]} {last[rng.integers(len(last))]}")
    contacts = first + sorted(pairs)
    lists = {
        "contact": contacts,
        "appliance": _read("appliances"),
        "room": _read("rooms"),
        "city": _read("cities"),
        "artist": _read("artists"),
        "song": _read("songs"),
        "item": _read("shopping_items"),
        "message": _read("messages"),
        "first_name": first,
        "surname": last,
    }
    return {k: tuple(v[i] for i in rng.permutation(len(v))) for k, v in lists.items()}


@lru_cache(maxsize=None)
def _zipf_cdf(n: int) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** ZIPF_EXPONENT
    return np.cumsum(p / p.sum())


def zipf_choice(rng: np.random.Generator, values) -> str:
    cdf = _zipf_cdf(len(values))
    return values[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(values) - 1)]


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _duration_words(rng) -> tuple[str, dict]:
    unit = _pick(rng, ("seconds", "minutes", "minutes", "minutes", "hours"))
    n = int(rng.integers(1, 61 if unit != "hours" else 13))
    if n == 1:
        unit = unit[:-1]
    return f"{number_words(n)} {unit}", {"amount": n, "unit": unit.rstrip("s")}


def _clock_words(rng) -> tuple[str, dict]:
    h = int(rng.integers(1, 13))
    m = _pick(rng, (0, 0, 0, 15, 30, 30, 45, 5, 10, 20, 25, 35, 40, 50, 55))
    mins = "" if m == 0 else (" oh " + _ONES[m] if m < 10 else " " + number_words(m))
    text = number_words(h) + mins
    period = _pick(rng, ("", " in the morning", " in the evening", " a m", " p m", " o'clock"))
    if period == " o'clock" and m:
        period = ""
    return text + period, {"hour": h, "minute": m, "period": period.strip()}


def _c(rng, name):
    return zipf_choice(rng, slot_lists()[name])


def _call(rng):
    c = _c(rng, "contact")
    t = _pick(rng, ("call {c}", "call {c} please", "phone {c}", "give {c} a call",
                    "call {c} on mobile", "ring {c}")).format(c=c)
    return t, {"contact": c}


def _dial(rng):
    n_digits = _pick(rng, (3, 4, 7, 7, 10))
    digits = [int(d) for d in rng.integers(0, 10, n_digits)]
    spoken = " ".join(DIGIT_WORDS[d] for d in digits)
    t = _pick(rng, ("dial {n}", "call {n}", "dial the number {n}")).format(n=spoken)
    return t, {"number": "".join(map(str, digits))}


def _message(rng):
    c, m = _c(rng, "contact"), _c(rng, "message")
    t = _pick(rng, ("send a message to {c} saying {m}", "text {c} {m}",
                    "tell {c} {m}", "message {c} {m}")).format(c=c, m=m)
    return t, {"contact": c, "message": m}


def _switch(on: bool):
    def gen(rng):
        a, r = _c(rng, "appliance"), _c(rng, "room")
        word = "on" if on else "off"
        pats = (f"turn {word} the {{r}} {{a}}", f"turn the {{a}} {word} in the {{r}}",
                f"switch {word} the {{a}}", f"turn {word} the {{a}} in the {{r}}",
                f"switch the {{r}} {{a}} {word}")
        pat = _pick(rng, pats)
        return pat.format(a=a, r=r), ({"appliance": a, "room": r} if "{r}" in pat else {"appliance": a})
    return gen


def _dim(rng):
    a = _pick(rng, ("light", "lights", "lamp", "ceiling light", "desk lamp", "floor lamp"))
    r = _c(rng, "room")
    pct = int(rng.integers(1, 11)) * 10
    t = _pick(rng, ("dim the {r} {a}", "dim the {a} in the {r} to {p} percent",
                    "set the {r} {a} to {p} percent", "brighten the {a} in the {r}")).format(
        a=a, r=r, p=number_words(pct))
    slots = {"appliance": a, "room": r}
    if "percent" in t:
        slots["percent"] = pct
    return t, slots


def _timer(rng):
    d, slots = _duration_words(rng)
    t = _pick(rng, ("set a timer for {d}", "timer {d}", "start a {d} timer",
                    "set timer for {d}")).format(d=d)
    return t, slots


def _alarm(rng):
    c, slots = _clock_words(rng)
    day = _pick(rng, ("", "", " tomorrow", " on monday", " on friday", " every weekday"))
    t = _pick(rng, ("set an alarm for {c}", "wake me up at {c}", "alarm at {c}")).format(c=c) + day
    return t, {**slots, "day": day.strip()}


def _play(rng):
    kind = rng.random()
    if kind < 0.45:
        s, a = _c(rng, "song"), _c(rng, "artist")
        return _pick(rng, ("play {s} by {a}", "put on {s} by {a}")).format(s=s, a=a), {"song": s, "artist": a}
    if kind < 0.75:
        a = _c(rng, "artist")
        return _pick(rng, ("play some {a}", "play music by {a}", "play {a}")).format(a=a), {"artist": a}
    s = _c(rng, "song")
    return _pick(rng, ("play {s}", "play the song {s}")).format(s=s), {"song": s}


def _weather(rng):
    city = _c(rng, "city")
    when = _pick(rng, ("", "", " today", " tomorrow", " this weekend"))
    t = _pick(rng, ("what's the weather in {c}{w}", "weather in {c}{w}",
                    "will it rain in {c}{w}", "how hot is it in {c}{w}")).format(c=city, w=when)
    return t, {"city": city, "when": when.strip()}


def _volume(rng):
    r = rng.random()
    if r < 0.35:
        return _pick(rng, ("volume up", "turn it up", "louder please", "turn the volume up")), {"direction": "up"}
    if r < 0.7:
        return _pick(rng, ("volume down", "turn it down", "quieter please", "turn the volume down")), {"direction": "down"}
    level = int(rng.integers(0, 11))
    return _pick(rng, ("set the volume to {n}", "volume {n}")).format(n=number_words(level)), {"level": level}


def _stop(rng):
    return _pick(rng, ("stop", "cancel", "never mind", "stop the music", "cancel that",
                       "pause", "resume", "skip this song", "next song", "go back")), {}


def _shopping(rng):
    item = _c(rng, "item")
    t = _pick(rng, ("add {i} to my shopping list", "put {i} on the shopping list",
                    "add {i} to the list", "remind me to buy {i}")).format(i=item)
    return t, {"item": item}


def _thermostat(rng):
    deg = int(rng.integers(60, 81))
    room = _c(rng, "room")
    t = _pick(rng, ("set the thermostat to {d} degrees", "make it {d} degrees in the {r}",
                    "set the {r} temperature to {d}")).format(d=number_words(deg), r=room)
    return t, {"degrees": deg, **({"room": room} if room in t else {})}


def _navigate(rng):
    city = _c(rng, "city")
    t = _pick(rng, ("navigate to {c}", "directions to {c}", "how far is {c}",
                    "what time is it in {c}")).format(c=city)
    return t, {"city": city}


INTENTS = {
    "call_contact": (_call, 0.12),
    "dial_number": (_dial, 0.08),
    "send_message": (_message, 0.08),
    "turn_on": (_switch(True), 0.10),
    "turn_off": (_switch(False), 0.08),
    "dim_light": (_dim, 0.05),
    "set_timer": (_timer, 0.07),
    "set_alarm": (_alarm, 0.07),
    "play_music": (_play, 0.10),
    "weather": (_weather, 0.07),
    "volume": (_volume, 0.05),
    "stop_cancel": (_stop, 0.03),
    "shopping_list": (_shopping, 0.05),
    "thermostat": (_thermostat, 0.03),
    "navigate": (_navigate, 0.02),
}
_NAMES = tuple(INTENTS)
_W = np.array([INTENTS[n][1] for n in _NAMES])
_CDF = np.cumsum(_W / _W.sum())


def sample(rng: np.random.Generator) -> tuple[str, str, dict]:
    """(text, intent, slots) for one command; text is normalized and encodable."""
    intent = _NAMES[min(int(np.searchsorted(_CDF, rng.random(), side="right")), len(_NAMES) - 1)]
    text, slots = INTENTS[intent][0](rng)
    text = normalize(text)
    encode(text)  # raises if a slot list ever brings in a character outside the vocabulary
    return text, intent, slots
