#!/usr/bin/env bash
# Unpack the newest ComfyUI source snapshot and build a CPU venv that can run it with this extension.
#
#   scripts/setup_comfyui.sh DEST [SNAPSHOT_DIR]
#
# DEST/ComfyUI is the tree (COMFYUI_DIR), DEST/venv its interpreter (COMFYUI_PYTHON = DEST/venv/bin/python).
# SNAPSHOT_DIR (default $ECHOMIMIC_SHARED/comfyui, else ../shared/comfyui next to this repo) holds ComfyUI-<version>-<commit>.tar.gz files;
# the highest version wins, so a newly added snapshot is used without changing this script.
# The torch/torchvision/torchaudio steps follow ../shared/docs/real-comfyui.md (CPU-only machine).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:?usage: setup_comfyui.sh DEST [SNAPSHOT_DIR]}"
SNAPSHOTS="${2:-${ECHOMIMIC_SHARED:-$REPO/../shared}/comfyui}"
TORCH_PIN="torch==2.13.0"

TARBALL="$(printf '%s\n' "$SNAPSHOTS"/ComfyUI-*.tar.gz | sort -V | tail -n 1)"
[ -f "$TARBALL" ] || { echo "no ComfyUI-*.tar.gz snapshot in $SNAPSHOTS" >&2; exit 1; }
echo "ComfyUI snapshot: $(basename "$TARBALL")"

mkdir -p "$DEST"
rm -rf "$DEST/ComfyUI"
mkdir "$DEST/ComfyUI"
tar -xzf "$TARBALL" -C "$DEST/ComfyUI"

if [ ! -x "$DEST/venv/bin/python" ]; then
  python3 -m venv "$DEST/venv"
fi
PY="$DEST/venv/bin/python"
"$PY" -m pip install --quiet "$TORCH_PIN"
echo "$TORCH_PIN" > "$DEST/constraints.txt"
# ComfyUI's requirements without the torch family (installed below, CPU workarounds) and spandrel (--no-deps).
grep -vE '^(torch|torchvision|torchaudio|spandrel)([<>=~ ]|$)' "$DEST/ComfyUI/requirements.txt" > "$DEST/comfyui-requirements.txt"
"$PY" -m pip install --quiet -r "$DEST/comfyui-requirements.txt" -c "$DEST/constraints.txt" requests
# What a user installs for this extension (custom_nodes/<ext>/requirements.txt).
"$PY" -m pip install --quiet -r "$REPO/requirements.txt" -c "$DEST/constraints.txt"
# torchvision 0.28 is the only build for torch 2.13 (CUDA): its Python parts work once the fake-op
# registrations for the missing C++ ops are skipped.
"$PY" -m pip install --quiet --no-deps torchvision==0.28.0 spandrel torchaudio==2.11.0
"$PY" - <<'PYEOF'
import pathlib, re, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"])
meta = site / "torchvision" / "_meta_registrations.py"
text = meta.read_text()
marker = "# patched for CPU-only torch (no torchvision ops)"
if marker not in text:
    text = re.sub(r'@torch\.library\.register_fake\("torchvision::(nms|qnms)"\)',
                  r'@(torch.library.register_fake("torchvision::\1") if torchvision.extension._has_ops() '
                  r'else (lambda f: f))', text)
    text = text.replace("import torchvision.extension", "import torchvision.extension  " + marker, 1) \
        if "import torchvision.extension" in text else f"import torchvision.extension  {marker}\n" + text
    meta.write_text(text)
# torchaudio's compiled libraries do not match this torch; its pure-Python functions work without them.
for lib in (site / "torchaudio" / "lib").glob("*.so"):
    lib.unlink()
PYEOF
"$PY" -c "import torchvision, torchaudio, spandrel; print('torchvision', torchvision.__version__, 'torchaudio', torchaudio.__version__)"
echo "COMFYUI_DIR=$DEST/ComfyUI"
echo "COMFYUI_PYTHON=$PY"
