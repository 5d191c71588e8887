"""Leaderboards from the results store: one table per backbone, variants as rows, ratios vs static."""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import UserError, unknown_choice

FORMATS = ("md", "csv", "json", "html")
BASELINE = "static"


def load_results(store: Any, suite: str | None = None) -> pd.DataFrame:
    """Rows of the store (a ResultStore or a path) for `suite`, one per cell, with status ok or failed."""
    from .store import ResultStore

    own = not isinstance(store, ResultStore)
    db = ResultStore(store, readonly=True) if own else store
    try:
        suites = db.suites()
        if suite is not None and suite not in suites:
            raise unknown_choice("suite in the store", suite, suites) if suites else UserError(
                f"the results store {db.path} holds no results yet (run a suite first)")
        return db.dataframe(suite=suite)
    finally:
        if own:
            db.close()


def default_suite(df: pd.DataFrame) -> str:
    """The suite of the most recently finished row."""
    if df.empty:
        raise UserError("the results store holds no results yet (run a suite first)")
    return str(df.sort_values("finished")["suite"].iloc[-1])


def metric_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Long table (backbone, variant, metric, value, order) of every ok measurement."""
    records: list[dict[str, Any]] = []
    for row in df[df["status"] == "ok"].itertuples(index=False):
        v, o = row.values or {}, row.options or {}
        base = {"backbone": row.backbone, "variant": row.variant, "id": row.id}

        def add(metric: str, value: Any, order: int, base: dict = base, **extra: Any) -> None:
            if value is not None:
                records.append({**base, "metric": metric, "value": float(value), "order": order, **extra})

        if row.kind == "params":
            add("params (M)", _get(v, "total", scale=1e-6), 0)
            add("deployed params (M)", _get(v.get("deployed") or {}, "total", scale=1e-6), 1)
        elif row.kind == "macs":
            add("MACs (M)", _get(v, "macs", scale=1e-6), 2)
            if v.get("macs"):
                add("overhead (% MACs)", 100.0 * v.get("overhead_macs", 0) / v["macs"], 3)
        elif row.kind == "speed":
            dev, b, mode = o.get("device", "cpu"), o.get("batch_size"), o.get("mode", "inference")
            prec = "" if o.get("precision", "fp32") == "fp32" else f" {o['precision']}"
            tag = "train" if mode == "train" else "infer"
            add(f"{tag} {dev}{prec} b{b} (img/s)", v.get("throughput"), 10 + (mode == "train") * 1000 + b,
                device=dev, batch_size=b, mode=mode)
            if b == 1 and mode != "train":
                add(f"latency {dev}{prec} b1 (ms)", v.get("latency_ms"), 5)
        elif row.kind == "memory":
            add(f"peak mem {o.get('mode', 'inference')} b{o.get('batch_size')} (MiB)",
                _get(v, "peak_bytes", scale=1 / 2**20), 3000 + o.get("batch_size", 0))
        elif row.kind == "accuracy":
            top1 = v.get("top1")
            add(f"top-1 {o.get('dataset')} (%)", None if top1 is None else _as_percent(top1), 4000,
                dataset=o.get("dataset"), seed=o.get("seed"))
    return pd.DataFrame.from_records(records, columns=["backbone", "variant", "metric", "value", "order", "id",
                                                       "device", "batch_size", "mode", "dataset", "seed"])


def _get(d: dict[str, Any], key: str, scale: float = 1.0) -> float | None:
    val = d.get(key)
    return None if val is None else float(val) * scale


def _as_percent(top1: float) -> float:
    return 100.0 * top1 if top1 <= 1.0 else float(top1)


def leaderboards(df: pd.DataFrame, baseline: str = BASELINE) -> dict[str, pd.DataFrame]:
    """One numeric table per backbone: variants as rows; each metric then its ratio to `baseline`.

    Accuracy columns hold the mean over seeds with `... std` and `... n` beside it, and the
    difference to the baseline in points instead of a ratio.
    """
    long = metric_rows(df)
    out: dict[str, pd.DataFrame] = {}
    for backbone in dict.fromkeys(df["backbone"]):
        part = long[long["backbone"] == backbone]
        if part.empty:
            continue
        variant_order = list(dict.fromkeys(df[df["backbone"] == backbone]["variant"]))
        if baseline in variant_order:
            variant_order.remove(baseline)
            variant_order.insert(0, baseline)
        grouped = part.groupby(["variant", "metric"])["value"]
        stats = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()})
        metrics = part.drop_duplicates("metric").sort_values(["order", "metric"])["metric"].tolist()
        table = pd.DataFrame(index=pd.Index(variant_order, name="variant"))
        for metric in metrics:
            mean = stats["mean"].xs(metric, level="metric").reindex(variant_order)
            table[metric] = mean
            base = mean.get(baseline)
            if metric.startswith("top-1"):
                std = stats["std"].xs(metric, level="metric").reindex(variant_order)
                table[f"{metric} std"] = std.fillna(0.0)
                table[f"{metric} n"] = stats["n"].xs(metric, level="metric").reindex(variant_order)
                if base is not None and pd.notna(base):
                    table[f"{metric} vs {baseline} (pts)"] = mean - base
            elif base is not None and pd.notna(base) and base != 0 and "overhead" not in metric:
                table[f"{metric} vs {baseline}"] = mean / base
        out[backbone] = table
    return out


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Strings for reading: `value (ratio x)`, accuracy as `mean ± std (n=.., +pts)`, missing as `-`."""
    shown = pd.DataFrame(index=table.index)
    for col in table.columns:
        if col.endswith((" std", " n", "(pts)")) or f" vs {BASELINE}" in col:
            continue
        vals, ratio = table[col], table.get(f"{col} vs {BASELINE}")
        if col.startswith("top-1"):
            std, n, pts = table[f"{col} std"], table[f"{col} n"], table.get(f"{col} vs {BASELINE} (pts)")
            shown[col] = [("-" if pd.isna(m) else f"{m:.2f} ± {s:.2f} (n={int(k)}"
                           + ("" if pts is None or pd.isna(pts.iloc[i]) else f", {pts.iloc[i]:+.2f}") + ")")
                          for i, (m, s, k) in enumerate(zip(vals, std, n))]
        elif ratio is not None:
            shown[col] = [("-" if pd.isna(x) else f"{_num(x)} ({r:.2f}x)" if pd.notna(r) else _num(x))
                          for x, r in zip(vals, ratio)]
        else:
            shown[col] = [_num(x) for x in vals]
    return shown


def _num(x: float) -> str:
    if pd.isna(x):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) < 1 else f"{x:.2f}"


def environment_summary(df: pd.DataFrame) -> str:
    """One line: the most common environment of the rows (host, CPU, threads, GPU, versions, commit)."""
    envs = [json.dumps(e, sort_keys=True) for e in df["environment"] if isinstance(e, dict)]
    if not envs:
        return "environment: not recorded"
    env = json.loads(Counter(envs).most_common(1)[0][0])
    parts = []
    for key, label in (("host", "host"), ("cpu", "CPU"), ("cpu_model", "CPU"), ("cores", "cores"),
                       ("threads", "threads"), ("gpu", "GPU"), ("torch", "torch"), ("timm", "timm"),
                       ("git_commit", "commit"), ("commit", "commit")):
        val = env.get(key)
        if key in ("git_commit", "commit") and isinstance(val, str):
            val = val[:10] + ("+dirty" if env.get("git_dirty") else "")
        if val not in (None, "", [], {}):
            parts.append(f"{label} {val}")
    note = f" ({len(set(envs))} distinct environments)" if len(set(envs)) > 1 else ""
    speed = df[(df["kind"] == "speed") & (df["status"] == "ok")]
    threads = sorted({v.get("threads") for v in speed["values"] if isinstance(v, dict) and v.get("threads")})
    if threads:
        note += f"; speed measured with {'/'.join(map(str, threads))} thread(s)"
    return "environment: " + ", ".join(dict.fromkeys(parts)) + note


def temperature_note(df: pd.DataFrame) -> str:
    """One line: each annealing variant's temperature schedule in the accuracy rows and where its runs ended."""
    acc = df[(df["kind"] == "accuracy") & (df["status"] == "ok")]
    parts = []
    for variant, rows in acc.groupby("variant", sort=False):
        cfg = rows["config"].iloc[0] if isinstance(rows["config"].iloc[0], dict) else {}
        if "anneal_unit" not in cfg:
            continue
        span = (f"{cfg['anneal_epochs']:g} epochs" if cfg["anneal_unit"] == "epoch"
                else f"{cfg['anneal_fraction']:g} of the run")
        ends = [t for v in rows["values"] if isinstance(v, dict) for t in v.get("final_temperatures") or []]
        end = f", at {min(ends):.3g}-{max(ends):.3g} when training ended" if ends else ""
        parts.append(f"{variant} {cfg['temperature']:g} -> 1 over {span} (>= {cfg['anneal_min_iters']} iterations){end}")
    return "Temperature schedules (accuracy runs): " + "; ".join(parts) + "." if parts else ""


def failures(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] != "ok"][["backbone", "variant", "kind", "options", "error"]]


def render(df: pd.DataFrame, fmt: str = "md", suite: str | None = None, images: Sequence[Path] = ()) -> str:
    """The leaderboards of `df` (rows of one suite) as Markdown, CSV, JSON or a self-contained HTML page."""
    if fmt not in FORMATS:
        raise unknown_choice("report format", fmt, FORMATS)
    boards = leaderboards(df)
    env = environment_summary(df)
    title = f"dynconv-bench leaderboard: suite {suite or ', '.join(dict.fromkeys(df['suite']))}"
    fails = failures(df)
    if fmt == "csv":
        frames = [t.reset_index().assign(backbone=b) for b, t in boards.items()]
        if not frames:
            return ""
        full = pd.concat(frames, ignore_index=True)
        return full[["backbone"] + [c for c in full.columns if c != "backbone"]].to_csv(index=False)
    if fmt == "json":
        data = {"suite": suite, "environment": env, "baseline": BASELINE,
                "leaderboards": {b: json.loads(t.reset_index().to_json(orient="records")) for b, t in boards.items()},
                "failed": json.loads(fails.to_json(orient="records"))}
        return json.dumps(data, indent=2)
    if fmt == "md":
        lines = [f"# {title}", ""]
        for b, t in boards.items():
            lines += [f"## {b}", "", format_table(t).to_markdown(), ""]
        lines.append(f"In brackets: the ratio (x) or difference in points to `{BASELINE}` measured in the same suite; "
                     f"accuracy is mean ± std over n seeds. {env}")
        if temperature_note(df):
            lines += ["", temperature_note(df)]
        if not fails.empty:
            lines += ["", f"{len(fails)} failed cell(s):"]
            lines += [f"- {r.backbone}/{r.variant}/{r.kind}: {r.error}" for r in fails.itertuples()]
        return "\n".join(lines) + "\n"
    return _html(title, boards, " ".join(filter(None, [env, temperature_note(df)])), fails, images)


def _html(title: str, boards: dict[str, pd.DataFrame], env: str, fails: pd.DataFrame, images: Sequence[Path]) -> str:
    style = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
             "font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:1em 0}"
             ".foot{color:#666;font-size:12px}")
    body = [f"<h1>{html.escape(title)}</h1>"]
    for b, t in boards.items():
        body += [f"<h2>{html.escape(b)}</h2>", format_table(t).to_html(escape=True, border=0)]
    for img in images:
        if Path(img).suffix == ".png" and Path(img).is_file():
            data = base64.b64encode(Path(img).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(Path(img).stem)}" src="data:image/png;base64,{data}">')
    if not fails.empty:
        body.append(f"<h2>Failed cells ({len(fails)})</h2><ul>")
        body += [f"<li>{html.escape(f'{r.backbone}/{r.variant}/{r.kind}: {r.error}')}</li>" for r in fails.itertuples()]
        body.append("</ul>")
    body.append(f'<p class="foot">Ratios are relative to {BASELINE} from the same suite. {html.escape(env)}</p>')
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(df: pd.DataFrame, out_dir: str | Path, formats: Sequence[str] = FORMATS, suite: str | None = None,
                 images: Sequence[Path] = ()) -> list[Path]:
    """Write `leaderboard.<fmt>` files into `out_dir`; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"leaderboard.{fmt}"
        path.write_text(render(df, fmt, suite, images))
        paths.append(path)
    return paths
