"""Character classes the contract's text rules share, written out so that a JSON Schema pattern
means the same in ECMAScript (ajv, the JSON Schema dialect) and in Python's ``re``: their ``\\s``
differ (Python's holds U+001C to U+001F and U+0085, ECMAScript's U+FEFF).
"""

from __future__ import annotations

#: C0 and C1 control characters: Unicode category Cc.
CONTROL = r"\x00-\x1f\x7f-\x9f"
#: What ``str.isspace`` calls whitespace beyond the control characters.
SPACE = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: Everything ``str.isspace`` calls whitespace (what ``str.strip`` removes).
WHITESPACE = rf"\t-\r\x1c-\x1f\x85{SPACE}"
