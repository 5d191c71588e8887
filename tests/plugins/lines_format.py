"""Report format plugin (`dynconv_bench.formats`): one line per backbone and variant of the leaderboards."""

from __future__ import annotations

SUFFIX = "txt"
HELP = "test plugin: one line per backbone and variant"


def render(report) -> str:  # noqa: ANN001
    lines = [f"LINES {report.title}"]
    for part in report.parts:
        for backbone, table in part.boards.items():
            lines += [f"{backbone} {variant}" for variant in table.index]
    return "\n".join(lines) + "\n"
