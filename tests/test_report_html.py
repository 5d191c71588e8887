"""The HTML page: parsed (html5lib) for its structure in the default run; rendered by headless Chromium at 800 and
1400 px in the slow tier (no table cell wraps, the page never scrolls sideways, wide tables scroll in their box)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dynconv_bench.cli.main import main
from dynconv_bench.execution.executors import LocalExecutor
from dynconv_bench.execution.runner import run_suite
from dynconv_bench.execution.suite import parse_suite
from dynconv_bench.reporting.plots import make_plots
from dynconv_bench.reporting.report import render
from dynconv_bench.reporting.rows import load_results

html5lib = pytest.importorskip("html5lib")

SUITE = {"name": "h", "backbones": ["cifar_resnet8", "resnet18"], "variants": ["static", "static-se", "dyconv"],
         "measure": {"params": {}, "macs": {}, "speed": {"backbones": ["cifar_resnet8"], "batch_sizes": [1, 8]},
                     "accuracy": {"backbones": ["cifar_resnet8"], "seeds": [0, 1]}}}
VARIANTS = SUITE["variants"]


def _fake(cell: dict, plugins: tuple = ()) -> dict:
    k = {"static": 1.0, "static-se": 1.1, "dyconv": 3.9}[cell["variant"]]
    o = cell["options"]
    values = {"params": {"total": int(272_000 * k), "deployed": {"total": int(272_000 * k)}},
              "macs": {"macs": int(41_300_000 * k), "overhead_macs": int(1e5 * (k - 1))},
              "speed": {"throughput": 460.0 * o.get("batch_size", 1) / k, "latency_ms": 2.17 * k},
              "accuracy": {"top1": 96.0 + k / 3 + o.get("seed", 0) * 0.4, "num_classes": 10,
                           "temperature_schedules": ["30 -> 1 over 10 epochs"] if cell["variant"] == "dyconv" else []},
              }[cell["kind"]]
    return {"values": values, "status": "ok", "error": None, "started": None, "finished": None,
            "environment": {"host": "box", "cpu_model": "Test CPU", "threads": 2, "torch": "2.x"}}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:  # noqa: ANN001
    db = tmp_path_factory.mktemp("html") / "h.sqlite"
    run_suite(parse_suite(SUITE), db, executor=LocalExecutor(fn=_fake), progress=False)
    return db


@pytest.fixture(scope="module")
def page(store: Path, tmp_path_factory) -> tuple[str, list[Path]]:  # noqa: ANN001
    df = load_results(store, "h")
    pngs = [p for p in make_plots(df, tmp_path_factory.mktemp("plots"), "h") if p.suffix == ".png"]
    return render(df, "html", "h", pngs), pngs


def _parse(text: str):  # noqa: ANN202
    return html5lib.parse(text, treebuilder="etree", namespaceHTMLElements=False)


def _text(el) -> str:  # noqa: ANN001
    return " ".join("".join(el.itertext()).split())


def test_page_structure(page: tuple[str, list[Path]]) -> None:
    text, pngs = page
    doc = _parse(text)
    ids = {el.get("id") for el in doc.iter() if el.get("id")}
    links = [a.get("href") for a in doc.find(".//nav").iter("a")]
    assert links == ["#cifar-resnet8", "#resnet18"] and all(h[1:] in ids for h in links)  # contents
    sections = {s.get("id"): s for s in doc.iter("section")}
    assert list(sections) == ["cifar-resnet8", "resnet18"]
    for backbone, section in zip(("cifar_resnet8", "resnet18"), sections.values()):
        assert _text(section.find("h2")) == backbone
        box = section.find("div[@class='scroll']")
        table = box.find("table")  # the table sits in its scrolling box
        heads = table.find("thead").findall("tr")
        assert len(heads) == 1 and _text(heads[0].find("th")) == "variant"  # no empty "variant" row
        assert [_text(tr.find("td")) for tr in table.find("tbody").findall("tr")] == VARIANTS
        notes = [_text(p) for p in section.findall("p[@class='note']")]
        assert notes[0].startswith("In brackets (x): the ratio to static;")  # next to the table it explains
        assert "`" not in _text(section)  # the notes' `names` are <code>, no Markdown left
        assert [_text(c) for c in section.findall("p[@class='note']")[0].findall("code")][:2] == ["static", "static"]
        assert notes[-1].startswith("environment ") and "Chance top-1" in notes[-1] or backbone == "resnet18"
    cifar = sections["cifar-resnet8"]
    assert any(n.startswith("Temperature schedules (accuracy runs): dyconv 30 -> 1 over 10 epochs")
               for n in map(_text, cifar.findall("p[@class='note']")))
    assert not any("Temperature" in _text(p) for p in sections["resnet18"].findall("p"))
    figures = cifar.findall("div[@class='figures']/figure")
    assert len(figures) == len(pngs) == 4  # three accuracy trade-offs and throughput vs batch, all cifar_resnet8's
    for fig in figures:
        assert fig.find("img").get("src").startswith("data:image/png;base64,")
        caption = _text(fig.find("figcaption"))  # title and caption once, here: the image has neither
        assert caption.startswith("cifar_resnet8") and len(caption) > 60 and fig.find("img").get("alt")
    assert sections["resnet18"].find(".//figure") is None
    style = doc.find(".//style").text
    assert "td{white-space:nowrap}" in style and ".scroll{overflow-x:auto" in style
    assert "td:first-child,th:first-child{text-align:left;position:sticky;left:0" in style
    assert "http://" not in text and "https://" not in text  # self-contained


def test_cli_embeds_figures_by_default(store: Path, tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "page.html"
    assert main(["--db", str(store), "report", "--format", "html", "-o", str(out)]) == 0
    assert len(_parse(out.read_text()).findall(".//figure/img")) == 4
    assert main(["--db", str(store), "report", "--format", "html", "--no-plots", "-o", str(out)]) == 0
    assert _parse(out.read_text()).find(".//figure") is None
    assert main(["--db", str(store), "report", "--format", "html", "--plots-dir", str(tmp_path / "no")]) == 2


def test_untagged_figures_go_under_other_figures_and_other_suites_stay_out(store: Path, tmp_path) -> None:  # noqa: ANN001
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2])
    fig.savefig(tmp_path / "mine.png")
    plt.close(fig)
    df = load_results(store, "h")
    others = [p for p in make_plots(df.assign(suite="other"), tmp_path, "other") if p.suffix == ".png"]
    assert len(others) == 4  # the same backbones, tagged with suite "other": a shared plots folder
    doc = _parse(render(df, "html", "h", [tmp_path / "mine.png", *others]))
    other = [s for s in doc.iter("section") if s.get("id") == "other-figures"]
    assert len(other) == 1 and [i.get("alt") for i in doc.iter("img")] == ["mine"]
    assert [a.get("href") for a in doc.find(".//nav").iter("a")][-1] == "#other-figures"


# -- a real browser -----------------------------------------------------------------------------
PROBE = """<script>
(() => {
  const wrapped = [];
  for (const td of document.querySelectorAll("td")) {
    const range = document.createRange();
    range.selectNodeContents(td);
    const tops = new Set(Array.from(range.getClientRects(), r => Math.round(r.top)));
    if (tops.size > 1) wrapped.push(td.textContent);
  }
  const boxes = Array.from(document.querySelectorAll(".scroll"));
  const sticky = [];  // scrolled sideways, the variant column stays at the box's left edge
  for (const box of boxes.filter(b => b.scrollWidth > b.clientWidth)) {
    box.scrollLeft = box.scrollWidth;
    const cell = box.querySelector("tbody td"), edge = box.getBoundingClientRect().left;
    sticky.push(Math.abs(cell.getBoundingClientRect().left - edge) < 2 && box.scrollLeft > 0);
    box.scrollLeft = 0;
  }
  const captions = Array.from(document.querySelectorAll("figcaption"), c => c.textContent);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    width: window.innerWidth, wrapped,
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    scrolling: boxes.filter(b => b.scrollWidth > b.clientWidth).length, boxes: boxes.length, sticky,
    backticks: document.body.innerText.includes("`"), captions,
    figure_width: Math.min(...Array.from(document.querySelectorAll("figure img"), i => i.clientWidth)),
  });
  document.body.appendChild(probe);
})();
</script>"""


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium (apt-get install chromium)")
@pytest.mark.parametrize("width", [800, 1400])
def test_in_headless_chromium_no_cell_wraps_and_the_page_fits(width: int, page: tuple[str, list[Path]],
                                                              tmp_path) -> None:  # noqa: ANN001
    browser = _chromium()
    text, _ = page
    path = tmp_path / "page.html"
    path.write_text(text.replace("</body>", PROBE + "</body>"))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           "--hide-scrollbars", f"--window-size={width},1000",
           "--dump-dom", path.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"'))
    assert probe["width"] == width
    assert probe["wrapped"] == []  # e.g. "0.272 (1.00x)" stays on one line
    assert probe["overflow"] == 0  # nothing sticks out of the page ...
    assert probe["boxes"] == 2 and (probe["scrolling"] >= 1 if width == 800 else True)  # ... wide tables scroll
    assert len(probe["sticky"]) == probe["scrolling"] and all(probe["sticky"])  # the variant column stays
    assert not probe["backticks"]  # no raw Markdown
    assert len(probe["captions"]) == 4 and len(set(probe["captions"])) == 4  # each caption once
    assert probe["figure_width"] >= min(width - 100, 900) * 0.9  # one readable figure a row, not thumbnails
    shot = tmp_path / "page.png"
    subprocess.run([*cmd[:-2], f"--screenshot={shot}", path.as_uri()], capture_output=True, timeout=120, check=True)
    from PIL import Image

    assert Image.open(shot).size == (width, 1000)
