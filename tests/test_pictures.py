"""The pictures of the step (`--timeline`, `--snapshot`, `--format html`), read back as their
readers read them: XML, torch's own memory-snapshot tools, an HTML parser and a real browser.

Every figure a picture shows is checked against the JSON report of the same run."""
from __future__ import annotations

import html.parser
import pickle
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from test_cli import REPO, SEED, only_model, report_json, run_gpumem

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.diagnostics import human

SVG = "{http://www.w3.org/2000/svg}"
UNITS = {"B": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30}
GPT = REPO / "fixtures" / "gpt.py"
SMALL_GPT = (GPT, "--model", "GPT(GPTConfig(n_layer=2))", "--input-shape", "64", "--input-shape", "64",
             "--input-dtype", "int64", "--batch-size", "2")
# the seed CNN plainly, and a small GPT under each training set-up that moves blocks around differently
SETUPS = {
    "seed": (SEED,),
    "gpt checkpoint ddp": SMALL_GPT + ("--checkpoint", "Block", "--strategy", "ddp", "--world-size", "4"),
    "gpt fsdp": SMALL_GPT + ("--strategy", "fsdp", "--world-size", "4", "--shard-unit", "Block"),
    "gpt amp accumulate": SMALL_GPT + ("--dtype", "amp-bf16", "--accumulate", "3"),
}


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def highest(root: ET.Element) -> float:
    """The top of the stacked areas, in bytes, read off the picture's own y axis (its tick labels)."""
    ticks = []
    for t in root.iter(f"{SVG}text"):
        m = re.fullmatch(r"([\d.]+) (B|KiB|MiB|GiB)|0", t.text or "")
        if m and t.get("text-anchor") == "end" and float(t.get("x")) < 100:
            ticks.append((float(m.group(1) or 0) * UNITS[m.group(2) or "B"], float(t.get("y"))))
    (v0, y0), (v1, y1) = min(ticks), max(ticks)
    tops = [float(y) for p in root.iter(f"{SVG}path") for y in re.findall(r"[\d.]+,([\d.]+)", p.get("d"))]
    return v0 + (y0 - min(tops)) / (y0 - y1) * (v1 - v0)


def test_timeline_svg_shows_the_step(tmp_path):
    out = tmp_path / "seed.svg"
    proc = run_gpumem(SEED, "--timeline", out)
    assert proc.returncode == 0, proc.stderr
    assert f"timeline written to {out}" in proc.stderr
    model = only_model(report_json(SEED))
    root = ET.parse(out).getroot()
    words = texts(root)
    assert any(w.startswith("SeedCNN: one training step, batch 64, float32, adam") for w in words), words
    assert f"peak {human(model['memory']['peak'])}" in words
    assert "backward, features.4" in words  # the layer at the peak
    assert {"forward", "backward", "optimizer"} <= set(words)
    assert not any(w.startswith("budget") for w in words)  # none set: no line
    # the highest point is the reported peak, to the picture's resolution (0.1 px of ~300)
    assert highest(root) == pytest.approx(model["memory"]["peak"], rel=2e-3)


def test_timeline_draws_the_budget_per_gpu(tmp_path):
    out = tmp_path / "t.svg"
    proc = run_gpumem(SEED, "--timeline", out, "--budget", "200MiB", "--strategy", "ddp", "--world-size", "2")
    assert proc.returncode == 0, proc.stderr
    root = ET.parse(out).getroot()
    assert "budget per GPU 200.0 MiB" in texts(root)
    line = next(e for e in root.iter(f"{SVG}line") if e.get("stroke") == "#b00020")
    ticks = {t.text: float(t.get("y")) for t in root.iter(f"{SVG}text") if t.text in ("0", "200 MiB")}
    assert float(line.get("y1")) == pytest.approx(ticks["200 MiB"], abs=0.2)


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_snapshot_replays_to_the_peak(tmp_path, setup):
    torch_viz = pytest.importorskip("torch.cuda._memory_viz")
    out = tmp_path / "step.pickle"
    proc = run_gpumem(*SETUPS[setup], "--snapshot", out)
    assert proc.returncode == 0, proc.stderr
    with open(out, "rb") as f:
        snap = pickle.load(f)
    entries = snap["device_traces"][0]
    assert {e["action"] for e in entries} == {"alloc", "free_requested", "free_completed"}
    total = peak = 0
    for e in entries:
        total += e["size"] if e["action"] == "alloc" else -e["size"] if e["action"] == "free_completed" else 0
        peak = max(peak, total)
    model = only_model(report_json(*SETUPS[setup]))
    assert peak == model["memory"]["peak"]
    # what is live at the end is the segment's active blocks: weights, optimizer state, gradients, ...
    active = sum(b["requested_size"] for s in snap["segments"] for b in s["blocks"] if b["state"] == "active_allocated")
    assert active == total
    frames = entries[-1]["frames"]
    assert frames[-1]["filename"] == model["file"] and frames[-1]["name"] == model["name"]
    # torch's own readers take it as a real snapshot
    assert f"{len(entries)} entries" in torch_viz.trace(snap)
    assert "total_allocated" in torch_viz.segsum(snap)
    assert "Active Memory Timeline" in torch_viz.trace_plot(snap)


def test_snapshot_frames_name_the_layer_and_its_line(tmp_path):
    out = tmp_path / "seed.pickle"
    assert run_gpumem(SEED, "--snapshot", out).returncode == 0
    snap = pickle.loads(out.read_bytes())
    layers = {l["name"]: l["line"] for l in only_model(report_json(SEED))["layers"]}
    conv = next(e for e in snap["device_traces"][0] if e["frames"][0]["name"] == "features.0: activations")
    assert conv["action"] == "alloc" and conv["frames"][0]["line"] == layers["features.0"]
    assert conv["size"] == 64 * 32 * 50 * 50 * 4  # its output, worked by hand


def test_several_models_write_one_file_each(tmp_path):
    proc = run_gpumem(REPO / "fixtures" / "lenet.py", "--timeline", tmp_path / "t.svg",
                      "--snapshot", tmp_path / "s.pickle")
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 4 and all(re.fullmatch(r"(t-\w+\.svg|s-\w+\.pickle)", n) for n in written), written
    for p in tmp_path.iterdir():
        assert f"written to {p}" in proc.stderr


def test_unwritable_path_is_one_line(tmp_path):
    proc = run_gpumem(SEED, "--timeline", tmp_path / "no" / "such" / "dir.svg")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert re.search(r"^gpumem: cannot write .*dir\.svg: No such file or directory$", proc.stderr, re.M), proc.stderr


def test_markdown_names_the_timeline(tmp_path):
    out = tmp_path / "t.svg"
    proc = run_gpumem(SEED, "--format", "markdown", "--timeline", out)
    assert f"![Memory during one training step of SeedCNN]({out})" in proc.stdout
    assert "<details><summary>Per-layer table (12 rows)</summary>" in proc.stdout


def test_plugin_mode_records_nothing():
    """The flake8 plugin never asks for pictures: no trace is kept."""
    result = analyse_source(SEED.read_text(), str(SEED), layers=False)
    assert all(m.timeline is None for m in result.models)


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.refs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v]

    def handle_data(self, data):
        self.text.append(data)


def html_page(tmp_path) -> tuple[Path, str]:
    proc = run_gpumem(SEED, "--format", "html", "--budget", "200MiB")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "report.html"
    path.write_text(proc.stdout, encoding="utf-8")
    return path, proc.stdout


def test_html_is_one_self_contained_page(tmp_path):
    _, page = html_page(tmp_path)
    parser = _Page()
    parser.feed(page)
    assert parser.refs == []  # nothing fetched from anywhere
    assert "script" not in parser.tags and "link" not in parser.tags and "@import" not in page
    assert "svg" in parser.tags and parser.tags.count("table") == 2
    text = " ".join(parser.text)
    model = only_model(report_json(SEED))
    assert f"peak {human(model['memory']['peak'])}" in text
    assert "GPM200" in text and "features.0" in text


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and unfiltered rows of an 8-bit RGB(A) PNG: what Chromium writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for r in range(height):
        kind, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def test_html_renders_in_a_browser(tmp_path):
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium): the page is not rendered")
    path, _ = html_page(tmp_path)
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1100,1400", path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (1100, 1400)
    bpp = len(rows[0]) // width
    inked = [sum(1 for x in range(0, len(row), bpp) if row[x:x + 3] != b"\xff\xff\xff") for row in rows]
    assert sum(inked) > 0.05 * width * height  # text, tables and the picture's areas, not a blank page
    # the timeline's coloured areas are drawn: the activations' green is there
    green = sum(row.count(bytes((0x00, 0x9E, 0x73)) + (b"\xff" if bpp == 4 else b"")) for row in rows)
    assert green > 2000


def test_timeline_columns_of_an_rnn_stay_positive():
    """A GRU's backward frees part of what it kept midway (negative transients): the picture shows
    fewer activations then, never a negative band, and still tops out at the peak."""
    from flake8_gpumem.pictures.timeline import columns

    path = REPO / "fixtures" / "rnn_models.py"
    model = analyse_source(path.read_text(), str(path), model="GRUClassifier", timeline=True).models[0]
    cols = columns(model)
    assert min(v for _, split, _ in cols for v in split.values()) >= 0
    assert max(sum(split.values()) for _, split, _ in cols) == model.memory.peak
