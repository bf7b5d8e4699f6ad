"""Run every atheris harness for a bounded time on a seed corpus made here; exit 1 on a finding.

    python fuzz/run.py [--seconds 20] [--only images csv_files] [--artifacts fuzz/artifacts]

Harnesses: fuzz/images.py (photo decoding) and fuzz/csv_files.py (the catalogue and event CSV
readers). Each starts from a few small valid inputs generated on the spot (JPEG, PNG, GIF,
BMP, TIFF and WebP photos in several modes; comma, semicolon and tab separated CSVs), so no
binary corpus lives in the repository, and libFuzzer mutates them, guided by coverage of our
code (and PIL's Python plugins) for ``--seconds`` each. An input that raises anything but the
parser's own error, runs over 10 s or needs over 2 GB is saved as
``ARTIFACTS/<harness>-crash-*`` (or ``-timeout-``, ``-oom-``); rerun one with
``python fuzz/<harness>.py ARTIFACT``. `make test` runs this for 20 s per harness.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESSES = ("images", "csv_files")
CSV_SEEDS = {
    "catalogue.csv": "id,name,price,articleType\n1,Blue shirt,12.5,Tshirts\n2,\"Dress, red\",30,Dresses\n",
    "semicolon.csv": "\ufeffid;name;price\n0111565001;Socks;0.02\n0111565002;\"multi\nline\";N/A\n",
    "ragged.csv": "id,name\n1,a,extra\n,missing id\n1,duplicate\n\"open quote,x\n",
    "events.csv": "user,item,ts,type,price\nu1,i1,2024-01-02T03:04:05Z,view,\nu1,i2,1700000000,purchase,9.99\n"
                  "u2,i1,2024-13-45,cart,-1\n",
    "events.tsv": "user\titem\tts\ttype\nu1\ti1\t1700000000.5\trating\nu2\ti\"2\t881250949\tview\n",
}


def image_seeds() -> dict[str, bytes]:
    """Small photos in the formats and modes a catalogue feed brings (made with PIL)."""
    from PIL import Image

    def encoded(fmt: str, mode: str, size: tuple[int, int] = (24, 16), **save) -> bytes:
        colour = 90 if mode in ("1", "L", "P", "I;16") else (200, 40, 40, 120)[: len(mode)]
        out = io.BytesIO()
        Image.new(mode, size, colour).save(out, fmt, **save)
        return out.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    return {
        "rgb.jpg": encoded("JPEG", "RGB", (40, 56)),
        "cmyk.jpg": encoded("JPEG", "CMYK"),
        "progressive.jpg": encoded("JPEG", "L", progressive=True),
        "rotated.jpg": encoded("JPEG", "RGB", exif=exif.tobytes()),
        "alpha.png": encoded("PNG", "RGBA"),
        "deep.png": encoded("PNG", "I;16"),
        "palette.png": encoded("PNG", "P", transparency=0),
        "anim.gif": encoded("GIF", "P", save_all=True,
                            append_images=[Image.new("P", (24, 16), 3)]),
        "mono.bmp": encoded("BMP", "1"),
        "scan.tiff": encoded("TIFF", "RGB", compression="tiff_lzw"),
        "photo.webp": encoded("WEBP", "RGB"),
    }


def seeds(harness: str) -> dict[str, bytes]:
    if harness == "images":
        return image_seeds()
    return {name: text.encode("utf-8") for name, text in CSV_SEEDS.items()} | {
        "latin1.csv": "id,name\n1,Caf\xe9\n".encode("latin-1")}


def run(harness: str, seconds: int, artifacts: Path, scratch: Path) -> bool:
    """One harness for ``seconds``; True when it found nothing."""
    corpus = scratch / harness
    corpus.mkdir()
    for name, data in seeds(harness).items():
        (corpus / name).write_bytes(data)
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / f"{harness}.py"), str(corpus), f"-max_total_time={seconds}",
           "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1",
           f"-artifact_prefix={artifacts}/{harness}-"]
    env = {**os.environ, "TMPDIR": str(scratch), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    print(f"fuzzing {harness} for {seconds} s ({len(list(corpus.iterdir()))} seeds)", flush=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace")
    log = done.stdout + done.stderr
    stats = [ln for ln in log.splitlines() if ln.startswith(("stat::number_of_executed_units", "stat::new_units_added"))]
    print("  " + ", ".join(ln.split("::", 1)[1] for ln in stats) if stats else log[-2000:])
    if done.returncode != 0:
        print(log[-6000:])
        found = sorted(str(p) for p in artifacts.glob(f"{harness}-*"))
        print(f"FINDING in {harness} (exit {done.returncode}); inputs: {', '.join(found) or 'none saved'}; "
              f"rerun with: python fuzz/{harness}.py INPUT")
    return done.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="fuzzing time per harness")
    parser.add_argument("--only", nargs="+", choices=HARNESSES, default=list(HARNESSES))
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts", help="where findings are saved")
    args = parser.parse_args()
    try:
        import atheris  # noqa: F401
    except ImportError:
        # pyproject installs atheris where it has wheels (Linux x86_64); elsewhere it needs clang.
        if platform.system() == "Linux" and platform.machine() == "x86_64":
            print("atheris is not installed: run `make setup` (it is a test dependency)", file=sys.stderr)
            return 2
        print(f"fuzzing skipped: atheris has no wheel for {platform.system()} {platform.machine()}")
        return 0
    with tempfile.TemporaryDirectory(prefix="stylesense-fuzz-") as scratch:
        ok = [run(h, args.seconds, args.artifacts.resolve(), Path(scratch)) for h in args.only]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
