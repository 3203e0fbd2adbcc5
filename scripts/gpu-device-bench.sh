#!/usr/bin/env bash
# The GPU bench on a lent machine with an NVIDIA GPU (issue 12): one prepared run that prints
# `wembed gpu-bench` (adapter, host us per dispatch, sentences/s of all-MiniLM-L6-v2 in f32 /
# f16 / q8 / q4 at batch 1 / 32 / 256, the per-kernel table, the FMA and 4096^3 matmul peak
# probe) within 6 minutes. That machine may have no Rust toolchain and no Vulkan loader, so
# everything it needs is prepared here, into the git-ignored assets/device/ (under 64 MiB, the
# device tool's carry limit):
#
#   scripts/gpu-device-bench.sh prepare    # here: release build, loader .debs, f16 model
#
# and then, from the session that holds the device tool, exactly this call:
#
#   run(command="bash scripts/gpu-device-bench.sh", carry=["assets/device"], timeout_s=420)
#
# assets/device/ holds: wembed (the stripped release binary, with the commit it was built
# from in COMMIT), debs/ (libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 for
# amd64, Debian 12), model/ (all-MiniLM-L6-v2 with an f16 model.safetensors: the f32 original
# is 91 MB, over the limit; f16 is read back as f32, so the f32 rows time f32 kernels on
# f16-rounded weights, which changes nothing but the last digits of the cosine column), and
# data/stsbenchmark.tsv.gz (the corpus).
#
# On the device (no argument): if libvulkan.so.1 is missing, the .debs are unpacked with
# `dpkg -x` into / (or, where / is not writable, into assets/device/root with
# LD_LIBRARY_PATH) and ldconfig runs; if no NVIDIA Vulkan ICD is registered where the loader
# looks, VK_DRIVER_FILES and __EGL_VENDOR_LIBRARY_FILENAMES point at the driver's own files
# (/usr/local/nvidia/... on the machine seen so far, or wherever `find` sees them). Then the
# bench runs on Vulkan; if Vulkan finds no NVIDIA adapter, a short run on GL follows.
#
# Tested here on lavapipe (Mesa's software Vulkan), with the packages installed and, with
# DEVICE_ROOT=/tmp/somewhere FORCE_LOADER=1, through the unpacking path.
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=assets/device
LIMIT_MIB=64

prepare() {
    set -e
    local commit
    commit=$(git rev-parse --short HEAD)
    git diff --quiet HEAD -- src shaders Cargo.toml Cargo.lock || commit="$commit+uncommitted"
    WEMBED_COMMIT="$commit" cargo build --release
    rm -rf "$DEV"
    mkdir -p "$DEV/debs" "$DEV/data"
    strip -o "$DEV/wembed" target/release/wembed
    echo "$commit" >"$DEV/COMMIT"
    (cd "$DEV/debs" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    target/release/wembed quantize --dtype f16 assets/models/all-MiniLM-L6-v2 "$DEV/model"
    # The model card and training notes are not needed to run it.
    rm -f "$DEV/model/README.md" "$DEV/model/data_config.json" "$DEV/model/.gitattributes"
    cp assets/data/stsbenchmark.tsv.gz "$DEV/data/"
    du -ab "$DEV" | sort -n | tail -8
    local bytes
    bytes=$(du -sb "$DEV" | cut -f1)
    echo "assets/device: $((bytes / 1024 / 1024)) MiB of the $LIMIT_MIB MiB carry limit (commit $commit)"
    if [ "$bytes" -gt $((LIMIT_MIB * 1024 * 1024)) ]; then
        echo "too large to carry" >&2
        exit 1
    fi
}

has_vulkan_loader() {
    [ -z "${FORCE_LOADER:-}" ] && { ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1 '; }
}

install_loader() {
    local root="${DEVICE_ROOT:-/}"
    if [ "$root" = / ] && ! [ -w /usr/lib ]; then
        root="$PWD/$DEV/root"
    fi
    echo "== libvulkan.so.1 missing: unpacking $(ls "$DEV"/debs/*.deb | wc -l) packages into $root"
    mkdir -p "$root"
    for deb in "$DEV"/debs/*.deb; do
        dpkg -x "$deb" "$root" || echo "dpkg -x $deb failed"
    done
    if [ "$root" = / ]; then
        ldconfig
    else
        export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    fi
}

# The first file among the arguments that exists, else the first `find` hit for the name.
first_of() {
    local name=$1
    shift
    for f in "$@"; do
        [ -f "$f" ] && { echo "$f"; return; }
    done
    timeout 20 find / -xdev -maxdepth 7 -name "$name" 2>/dev/null | head -1
}

point_at_driver() {
    local registered=""
    for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        ls "$d"/nvidia*.json >/dev/null 2>&1 && registered="$d"
    done
    if [ -n "$registered" ]; then
        echo "NVIDIA Vulkan ICD registered in $registered"
    elif [ -z "${VK_DRIVER_FILES:-}" ]; then
        local icd egl
        icd=$(first_of nvidia_icd.json /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json)
        egl=$(first_of 10_nvidia.json /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json)
        if [ -n "$icd" ]; then
            export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"
            echo "VK_DRIVER_FILES=$icd"
        else
            echo "no NVIDIA Vulkan ICD file found"
        fi
        if [ -n "$egl" ]; then
            export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
            echo "__EGL_VENDOR_LIBRARY_FILENAMES=$egl"
        fi
    fi
}

device() {
    local started=$SECONDS
    echo "== $(date -u +%FT%TZ) on $(hostname), wembed commit $(cat "$DEV/COMMIT" 2>/dev/null || echo '?')"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    if ! [ -x "$DEV/wembed" ]; then
        echo "no $DEV/wembed: run 'scripts/gpu-device-bench.sh prepare' first and carry $DEV" >&2
        exit 1
    fi
    has_vulkan_loader || install_loader
    point_at_driver
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
    local args=(--model "$DEV/model" --data "$DEV/data/stsbenchmark.tsv.gz" ${BENCH_ARGS:-})
    echo "== Vulkan: wembed gpu-bench ${args[*]}"
    local out="$DEV/bench-vulkan.txt"
    WGPU_BACKEND=vulkan timeout 300 "$DEV/wembed" gpu-bench "${args[@]}" 2>&1 | tee "$out"
    local rc=${PIPESTATUS[0]}
    echo "== exit $rc after $((SECONDS - started)) s"
    if ! grep -q '^adapter: .*NVIDIA' "$out" && [ $((SECONDS - started)) -lt 240 ]; then
        echo "== no NVIDIA adapter on Vulkan; a quick try on GL"
        WGPU_BACKEND=gl timeout $((330 - (SECONDS - started))) "$DEV/wembed" gpu-bench --quick "${args[@]}" 2>&1
        echo "== exit $? after $((SECONDS - started)) s"
    fi
}

case "${1:-}" in
    prepare) prepare ;;
    "") device ;;
    *)
        echo "usage: $0 [prepare]" >&2
        exit 2
        ;;
esac
