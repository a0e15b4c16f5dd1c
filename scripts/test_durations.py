"""Writes tests/durations.json (seconds per test file) from a pytest JUnit XML report.

    python -m pytest -n 2 --dist loadfile --junitxml=report.xml
    python scripts/test_durations.py report.xml

`tests/conftest.py` runs the longest files first from it (`make durations`
does both steps).
"""

import collections
import json
import pathlib
import sys
import xml.etree.ElementTree as ET


def per_file(report: str) -> dict[str, float]:
    """Test file path → the summed time of its tests (setup included), longest first."""
    totals: collections.Counter[str] = collections.Counter()
    for case in ET.parse(report).iter("testcase"):
        path = case.get("classname", "").replace(".", "/") + ".py"
        totals[path] += float(case.get("time", 0.0))
    return {path: round(seconds, 1) for path, seconds in totals.most_common() if seconds >= 1.0}


if __name__ == "__main__":
    out = pathlib.Path(__file__).parent.parent / "tests" / "durations.json"
    out.write_text(json.dumps(per_file(sys.argv[1]), indent=1) + "\n")
    print(f"wrote {out}")
