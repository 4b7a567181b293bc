#!/usr/bin/env bash
# Build every plugin crate into a WebAssembly component.
#
#   plugins/build.sh            shipped plugins   -> plugins/<name>.wasm (what `host run --plugins plugins/` loads)
#   plugins/build.sh --fixtures also the test fixtures -> tests/fixtures/wasm/<name>.wasm
#   plugins/build.sh CRATE_DIR OUT_DIR   one crate (e.g. your new plugin) into OUT_DIR
#
# Two toolchain routes, detected, not assumed:
#   1. rustup has the wasm32-unknown-unknown target: plain `cargo build --target ...`.
#   2. it has not and cannot get it (no download): Debian's rustc-web ships the standard library
#      source, so std is built for wasm32 with -Zbuild-std (installed with apt-get when missing).
# Environment: WASM_TARGET_DIR (default target/wasm), CARGO_TARGET_DIR (native tools).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target=wasm32-unknown-unknown
wasm_dir="${WASM_TARGET_DIR:-$root/target/wasm}"
native_dir="${CARGO_TARGET_DIR:-$root/target}"

log() { printf '[build-plugins] %s\n' "$*" >&2; }

# --- what to build: pairs of "crate_dir out_dir" ---------------------------------------------
jobs=()
if [[ $# -eq 2 && -d "$1" ]]; then
    jobs+=("$1 $2")
else
    for dir in plugins/*/; do
        dir="${dir%/}"
        grep -q 'cdylib' "$dir/Cargo.toml" 2>/dev/null && jobs+=("$dir plugins")
    done
    if [[ "${1:-}" == "--fixtures" ]]; then
        for dir in tests/fixtures/*/; do
            dir="${dir%/}"
            grep -q 'cdylib' "$dir/Cargo.toml" 2>/dev/null && jobs+=("$dir tests/fixtures/wasm")
        done
    fi
fi

# --- toolchain route --------------------------------------------------------------------------
cargo_args=(build --profile plugin --target "$target" --target-dir "$wasm_dir")
if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    log "route: rustup target $target"
    env_args=()
else
    if [[ ! -x /usr/bin/rustc || ! -d /usr/lib/rustlib/src/rust/library || ! -x /usr/lib/llvm-19/bin/wasm-ld ]]; then
        log "rustup has no $target target; installing Debian's rustc-web, rust-web-src and lld-19 to build std for wasm32"
        if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
        "${sudo[@]}" apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q rustc-web rust-web-src lld-19 >&2
    fi
    log "route: Debian rustc $(/usr/bin/rustc --version | cut -d' ' -f2) with -Zbuild-std"
    env_args=(RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-19/bin/wasm-ld")
    cargo_args+=(-Zbuild-std=std,panic_abort)
fi

packages=()
for job in "${jobs[@]}"; do
    dir="${job%% *}"
    packages+=(-p "$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -1)")
done
log "compiling ${#jobs[@]} plugin crate(s) for $target"
env "${env_args[@]}" cargo "${cargo_args[@]}" "${packages[@]}" >&2

log "building the componentize tool"
cargo build --release -q -p componentize --target-dir "$native_dir" >&2
componentize="$native_dir/release/componentize"

for job in "${jobs[@]}"; do
    dir="${job%% *}"
    out="${job#* }"
    name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -1)"
    core="$wasm_dir/$target/plugin/${name//-/_}.wasm"
    mkdir -p "$out"
    "$componentize" "$core" "$out/$name.wasm"
    log "$out/$name.wasm ($(stat -c %s "$out/$name.wasm") bytes)"
done
