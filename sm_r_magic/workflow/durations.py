"""Step caching's ExpireAfter: a user's duration ("30d", "12h", "1d12h", or ISO 8601 "P30D", "PT12H") as the
ISO 8601 duration SageMaker's CacheConfig takes, and an ISO 8601 duration as seconds."""

import re

from ..errors import SmRMagicError

_ISO = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
_COMPACT = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
# Months and years have no fixed length: as SageMaker's own examples count them, 30 and 365 days.
_SECONDS = (365 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1)
_HINT = "give a duration like 30d, 12h, 1d12h or ISO 8601 P30D, PT12H"


def expire_after(text, option="cache"):
    """'30d' -> 'P30D', '12h' -> 'PT12H', '1d12h' -> 'P1DT12H'; an ISO 8601 duration is kept (upper-cased).
    In the short form m means minutes; in ISO 8601, M before T means months."""
    value = str(text or "").strip()
    if value[:1] in ("P", "p"):
        iso = value.upper()
        if _positive(_ISO.fullmatch(iso)) and not iso.endswith("T"):
            return iso
        raise SmRMagicError(f"{option} {text!r} is not an ISO 8601 duration: {_HINT}")
    match = _COMPACT.fullmatch(value.lower())
    if not _positive(match):
        raise SmRMagicError(f"{option} {text!r}: {_HINT}")
    years, weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    date = "".join(f"{n}{u}" for n, u in ((years, "Y"), (weeks, "W"), (days, "D")) if n)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    return "P" + date + (("T" + time) if time else "")


def seconds(iso):
    """The length of an ISO 8601 duration in seconds (months 30 days, years 365 days)."""
    match = _ISO.fullmatch(str(iso or "").upper())
    if not _positive(match):
        raise SmRMagicError(f"ExpireAfter {iso!r} is not an ISO 8601 duration: {_HINT}")
    return sum(int(g or 0) * unit for g, unit in zip(match.groups(), _SECONDS))


def _positive(match):
    return bool(match) and any(g and int(g) > 0 for g in match.groups())
