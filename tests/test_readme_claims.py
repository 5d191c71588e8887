"""The README says what a user needs: every shipped suite and the `suites` verb, which form its MAC column counts
(the same header scripts/readme_tables.py writes), and the test time on an idle and on a busy machine."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_lists_the_suites_verb_and_every_shipped_suite() -> None:
    assert "dynconv-bench suites" in README
    for path in sorted((ROOT / "suites").glob("*.toml")):
        assert f"`{path.stem}`" in README, path.stem


def test_the_mac_column_names_its_form_as_the_generator_writes_it() -> None:
    script = (ROOT / "scripts" / "readme_tables.py").read_text()
    header = "| variant | paper | defaults | ResNet-18 params | deployed params | MACs (deployed form) |"
    assert header in README and header in script
    assert "count the trained form (`MACs trained form`)" in README  # the smoke table's column says so itself


def test_test_time_claim_names_the_machine_and_the_busy_case() -> None:
    para = README.split("The default test run", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"2-core VM \(.*2 vCPUs\)", para)  # the machine the times were measured on
    assert re.search(r"\d+ tests in [\d-]+ s\*\* when idle \(.*load average", para)  # idle, with its load
    assert re.search(r"\*\*\d+ s\*\* with four busy processes\s+beside it \(load average [\d.]+", para)  # busy
