#!/usr/bin/env bash
# Makes the Dockerfile's base images offline, under the exact names its FROM lines use, from
# Debian's packages, for machines that cannot pull them:
#
#   runtime  the runtime stage's base (gcr.io/distroless/cc-debian12:nonroot): from scratch, the
#            packages distroless's cc image is made of unpacked (libc6, libgcc-s1, libgomp1,
#            libstdc++6, libssl3, tzdata, netbase, base-files, the Mozilla CA bundle), its
#            /etc/passwd and /etc/group, no shell, user 65532, workdir /home/nonroot.
#   build    the build stage's base (rust:<version>-bookworm): `debootstrap --variant=minbase`
#            with a C toolchain, git and curl, then rustup and the Rust toolchain laid out as the
#            official image lays them out (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo,
#            `rustup-init --profile minimal`), fetched from where rustup on this machine fetches.
#            The machine's CA bundle replaces the image's, so steps inside reach the package
#            registries as this machine does.
#
# The packages come from this machine's apt sources, in the versions apt would install here.
# Each image carries the label line.stand-in=<hash of this script> and is made again only when
# this script changes (a newer Debian point release does not matter to the tests). Downloads are kept in target/docker/stand-ins/.
# An image of that name without the label (the real one, pulled) is used as it is.
#
# Usage: scripts/docker-stand-ins.sh runtime|build
# Needs root, apt-get, dpkg-deb (and debootstrap for `build`), and `$DOCKER` (default `docker`)
# talking to an engine (DOCKER_HOST); `build` builds with --network host, the engine needing no NAT.
set -euo pipefail
cd "$(dirname "$0")/.."

which_image=${1:?usage: scripts/docker-stand-ins.sh runtime|build}
DOCKER=${DOCKER:-docker}
export DOCKER_BUILDKIT=1
cache=$PWD/target/docker/stand-ins
mkdir -p "$cache"
say() { echo "docker-stand-ins: $*"; }

# The base images the Dockerfile names: the first FROM is the build stage's, the last the runtime's.
froms=$(sed -n 's/^FROM \([^ ]*\).*$/\1/p' Dockerfile)
case $which_image in
  runtime) name=$(printf '%s\n' "$froms" | tail -n 1) ;;
  build) name=$(printf '%s\n' "$froms" | head -n 1) ;;
  *) echo "docker-stand-ins: unknown image '$which_image' (runtime or build)" >&2; exit 2 ;;
esac

# The package files apt would fetch here; refreshes the lists once when they are missing.
deb_files() {
  { apt-get download --print-uris "$@" 2>/dev/null \
    || { apt-get update -qq && apt-get download --print-uris "$@"; }; } | awk '{print $2}'
}

# The label of an image of this name: the hash it was made from, "real" without one, "" when absent.
label_of() {
  local label
  label=$("$DOCKER" image inspect -f '{{ index .Config.Labels "line.stand-in" }}' "$1" 2>/dev/null) || return 0
  echo "${label:-real}"
}

# Removes a root file system made here, unmounting anything left mounted inside it first.
remove_tree() {
  local dir=$1 mounts
  mounts=$(findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1' | sort -r)
  for m in $mounts; do umount -l "$m"; done
  rm -rf --one-file-system "$dir"
}

work=$(mktemp -d "$cache/work.XXXXXX")
trap 'remove_tree "$work"' EXIT

if [ "$which_image" = runtime ]; then
  packages=(base-files netbase tzdata libc6 libgcc-s1 libgomp1 libstdc++6 libssl3 ca-certificates)
  hash=$(sha256sum <"$0" | cut -c1-16)
  have=$(label_of "$name")
  if [ "$have" = real ] || [ "$have" = "$hash" ]; then
    say "$name is here ($([ "$have" = real ] && echo "the real image" || echo "stand-in $hash"))"
    exit 0
  fi
  say "making $name from Debian's packages (stand-in $hash)"
  debs=$cache/runtime-debs
  mkdir -p "$debs"
  files=$(deb_files "${packages[@]}")
  # Fetched by apt (its sources, its proxy settings) as root into our folder, kept for the next run.
  (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root "${packages[@]}")
  root=$work/rootfs
  mkdir -p "$root"
  for deb in $files; do dpkg-deb -x "$debs/$deb" "$root"; done
  # What distroless keeps of ca-certificates: the bundle, made as update-ca-certificates makes it.
  mkdir -p "$root/etc/ssl/certs"
  find "$root/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort | xargs cat \
    >"$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" "$root/usr/share/info"
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
  install -d -m 0700 "$root/root"
  install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
  install -d -m 1777 "$root/tmp"
  # No shell, by construction: none of these packages ships one.
  [ ! -e "$root/bin/sh" ] && [ ! -e "$root/usr/bin/sh" ] || { echo "docker-stand-ins: a shell got in" >&2; exit 1; }
  tar --numeric-owner -C "$root" -c . | "$DOCKER" import \
    --change 'USER 65532' \
    --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change "LABEL line.stand-in=$hash" \
    - "$name" >/dev/null
  say "$name made: $("$DOCKER" image inspect -f '{{.Size}}' "$name" | numfmt --to=iec) (stand-in $hash)"
  exit 0
fi

# --- the build stage's base ------------------------------------------------------------------------
rust_version=$(printf '%s' "$name" | sed -n 's/^rust:\([0-9][0-9.]*\)-bookworm$/\1/p')
[ -n "$rust_version" ] || { echo "docker-stand-ins: cannot make '$name' (expected rust:<version>-bookworm)" >&2; exit 1; }
case $(dpkg --print-architecture) in
  amd64) rust_host=x86_64-unknown-linux-gnu ;;
  arm64) rust_host=aarch64-unknown-linux-gnu ;;
  *) echo "docker-stand-ins: no Rust host triple known for $(dpkg --print-architecture)" >&2; exit 1 ;;
esac
# The official image is buildpack-deps:bookworm (much more) plus rustup; these are what a Rust build
# needs of it: a C compiler and linker, the C library's headers, git and curl.
include=ca-certificates,curl,gcc,git,libc6-dev
# rustup-init is rustup itself under that name: this machine's, so the toolchain comes from the
# same distribution server, and RUSTUP_DIST_SERVER / RUSTUP_UPDATE_ROOT too when they are set here.
rustup=$(command -v rustup) || { echo "docker-stand-ins: no rustup on this machine" >&2; exit 1; }
hash=$( { cat "$0"; echo "$name $rust_host $include"; "$rustup" --version 2>/dev/null; } | sha256sum | cut -c1-16)
have=$(label_of "$name")
if [ "$have" = real ] || [ "$have" = "$hash" ]; then
  say "$name is here ($([ "$have" = real ] && echo "the real image" || echo "stand-in $hash"))"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "docker-stand-ins: debootstrap is missing" >&2; exit 1; }
# The Debian mirror apt uses here for bookworm's main component.
mirror=$(apt-get indextargets --format '$(SITE) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' \
  | awk '$2 == "bookworm" && $3 == "main" {print $1; exit}')
[ -n "$mirror" ] || { echo "docker-stand-ins: apt has no bookworm main source to debootstrap from" >&2; exit 1; }
say "making $name: debootstrap --variant=minbase bookworm (+ $include), then rustup $rust_version (stand-in $hash)"
mkdir -p "$cache/debootstrap"
root=$work/rootfs
debootstrap --variant=minbase --include="$include" --cache-dir="$cache/debootstrap" \
  bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; echo "docker-stand-ins: debootstrap failed" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
base=line-stand-in/debian:bookworm-minbase
tar --numeric-owner -C "$root" -c . | "$DOCKER" import - "$base" >/dev/null

ctx=$work/context
mkdir -p "$ctx"
cp "$rustup" "$ctx/rustup-init"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
args=()
{
  echo "FROM $base"
  echo "LABEL line.stand-in=$hash"
  echo "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt"
  echo "ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\"
  echo "    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\"
  echo "    RUST_VERSION=$rust_version"
  for var in RUSTUP_DIST_SERVER RUSTUP_UPDATE_ROOT; do
    if [ -n "${!var:-}" ]; then echo "ARG $var"; args+=(--build-arg "$var"); fi
  done
  echo "RUN --mount=type=bind,source=rustup-init,target=/tmp/rustup-init \\"
  echo "    /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain \$RUST_VERSION \\"
  echo "      --default-host $rust_host \\"
  echo "    && chmod -R a+w \$RUSTUP_HOME \$CARGO_HOME && rustup --version && cargo --version && rustc --version"
} >"$ctx/Dockerfile"
"$DOCKER" build --network host "${args[@]}" -t "$name" "$ctx" >"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log" >&2; echo "docker-stand-ins: building $name failed" >&2; exit 1; }
say "$name made: $("$DOCKER" image inspect -f '{{.Size}}' "$name" | numfmt --to=iec) (stand-in $hash)"
