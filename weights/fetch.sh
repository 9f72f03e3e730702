#!/bin/sh
# Downloads an official checkpoint listed in weights/manifest.tsv and verifies it before giving it its name.
#   weights/fetch.sh NAME [DIR]     download NAME into DIR (default: current directory)
#   weights/fetch.sh --list         the names, sources and what is known about each
# Verification, strongest available: the full sha256; else the sha256 prefix the file name promises (what
# torch.hub checks); else Keras' md5; and the size when known. A file that fails is deleted, never renamed.
# Then convert it:  tl convert DIR/FILE model.safetensors
set -eu

here=$(cd "$(dirname "$0")" && pwd)
manifest="$here/manifest.tsv"
[ -r "$manifest" ] || { echo "fetch.sh: cannot read $manifest" >&2; exit 2; }

usage() { echo "usage: $0 NAME [DIR] | --list" >&2; exit 2; }
[ $# -ge 1 ] || usage

if [ "$1" = "--list" ]; then
  grep -v '^#' "$manifest" | awk -F'\t' '{
    printf "%-24s %-10s %-9s top=%-3s classes=%-5s %s\n", $1, $8, $9, $11, $10, ($3 == "none" ? "(not downloadable)" : $3) }'
  exit 0
fi

name=$1
dir=${2:-.}
row=$(grep -v '^#' "$manifest" | awk -F'\t' -v n="$name" '$1 == n' | head -n 1)
[ -n "$row" ] || { echo "fetch.sh: '$name' is not in $manifest (see $0 --list)" >&2; exit 2; }
field() { printf '%s\n' "$row" | cut -f "$1"; }
file=$(field 2); url=$(field 3); sha=$(field 4); prefix=$(field 5); md5=$(field 6); size=$(field 7)
[ "$url" != "none" ] || { echo "fetch.sh: '$name' is not downloadable (a local file of this project)" >&2; exit 2; }

mkdir -p "$dir"
target="$dir/$file"
part="$target.part"
trap 'rm -f "$part"' EXIT INT TERM
echo "fetching $url"
if command -v curl >/dev/null 2>&1; then
  curl -fL --retry 3 -o "$part" "$url"
elif command -v wget >/dev/null 2>&1; then
  wget -O "$part" "$url"
else
  echo "fetch.sh: neither curl nor wget is installed" >&2; exit 1
fi

fail() { echo "fetch.sh: $name: $1; the download was deleted" >&2; exit 1; }
actual_size=$(wc -c < "$part" | tr -d ' ')
if [ "$size" != "unknown" ] && [ "$actual_size" != "$size" ]; then fail "size $actual_size bytes, expected $size"; fi
actual_sha=$(sha256sum "$part" | cut -d' ' -f1)
verified=""
if [ "$sha" != "unknown" ]; then
  [ "$actual_sha" = "$sha" ] || fail "sha256 $actual_sha, expected $sha"
  verified="sha256"
elif [ "$prefix" != "unknown" ]; then
  case "$actual_sha" in "$prefix"*) verified="sha256 prefix $prefix" ;; *) fail "sha256 $actual_sha does not start with $prefix" ;; esac
fi
if [ "$md5" != "unknown" ]; then
  actual_md5=$(md5sum "$part" | cut -d' ' -f1)
  [ "$actual_md5" = "$md5" ] || fail "md5 $actual_md5, expected $md5"
  verified="${verified:+$verified, }md5"
fi
mv "$part" "$target"
trap - EXIT INT TERM
echo "saved $target ($actual_size bytes, sha256 $actual_sha)"
if [ -n "$verified" ]; then
  echo "verified: $verified"
else
  echo "warning: the manifest has no hash for $name; the file is UNVERIFIED (record the sha256 above once trusted)"
fi
