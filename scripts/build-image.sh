#!/usr/bin/env bash
# Build Flareship's image from the Dockerfile with Debian's buildah, start it, and check it answers.
#
# No image registry is reachable in CI, so the base image is made here: debootstrap a minimal
# Debian with python3, import it into buildah, and build with --build-arg BASE=<that image>.
# Storage is vfs and isolation chroot, so it runs as root in an unprivileged CI container.
# Needs: buildah debootstrap curl (Debian packages). Prints the image size; exits non-zero on failure.
#
# Env: FLARESHIP_IMAGE (default localhost/flareship:ci), FLARESHIP_BASE_IMAGE (default
# localhost/flareship-base:bookworm; reused when present), DEBIAN_MIRROR, IMAGE_WORKDIR,
# IMAGE_CONTEXT (default: the working tree; "HEAD" builds the last commit, via git archive).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${FLARESHIP_IMAGE:-localhost/flareship:ci}
BASE=${FLARESHIP_BASE_IMAGE:-localhost/flareship-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-bookworm}
WORK=${IMAGE_WORKDIR:-$(mktemp -d -t flareship-image.XXXXXX)}
PORT=${FLARESHIP_IMAGE_PORT:-18080}
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot BUILDAH_FORMAT=docker

for tool in buildah debootstrap curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-image: $tool is not installed (apt-get install $tool)" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "build-image: run as root (debootstrap and buildah's vfs storage need it)" >&2; exit 3; }

step() { printf '== %s (%ss)\n' "$1" "$SECONDS"; }
ctr=""
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
  buildah rmi --prune >/dev/null 2>&1 || true  # the untagged images earlier builds left
  rm -rf "$WORK/rootfs" "$WORK/data" "$WORK/context"
}
trap cleanup EXIT

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  step "debootstrap $SUITE (python3) as $BASE"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  # What an image needs no copy of: package lists and caches, docs, man pages, locales.
  rm -rf "$WORK/rootfs"/var/lib/apt/lists/* "$WORK/rootfs"/var/cache/apt/* "$WORK/rootfs"/usr/share/doc/* \
         "$WORK/rootfs"/usr/share/man/* "$WORK/rootfs"/usr/share/locale/* "$WORK/rootfs"/var/log/*
  # The CI host's trust store goes along: where TLS to PyPI passes through an intercepting proxy,
  # its CA is there and not in Debian's bundle (pip in the build would fail to verify PyPI).
  if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
  fi
  base_ctr=$(buildah from scratch)
  buildah copy --quiet "$base_ctr" "$WORK/rootfs" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/sh "$base_ctr"
  buildah commit --quiet "$base_ctr" "$BASE" >/dev/null
  buildah rm "$base_ctr" >/dev/null
  rm -rf "$WORK/rootfs"
fi

context=.
if [ "${IMAGE_CONTEXT:-.}" = HEAD ]; then
  context="$WORK/context" && rm -rf "$context" && mkdir -p "$context"
  git archive HEAD | tar -x -C "$context"
elif [ -n "${IMAGE_CONTEXT:-}" ]; then
  context=$IMAGE_CONTEXT
fi
step "build $IMAGE from the Dockerfile (BASE=$BASE, context $context)"
pip_args=()
[ -n "${PIP_INDEX_URL:-}" ] && pip_args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
buildah build --quiet --pull=never --layers=false --format docker --isolation chroot \
  --build-arg "BASE=$BASE" "${pip_args[@]}" -t "$IMAGE" -f "$context/Dockerfile" "$context" >/dev/null

size=$(buildah inspect --type image --format '{{.ImageSize}}' "$IMAGE" 2>/dev/null || true)
[ -n "$size" ] || size=$(buildah images --noheading --format '{{.Size}}' "$IMAGE")
step "image $IMAGE built; size: $size"

ctr=$(buildah from --pull=never "$IMAGE")
version=$(buildah run --isolation chroot "$ctr" -- flareship --version)
echo "flareship --version in the image: $version"
[[ "$version" == flareship\ * ]] || { echo "build-image: unexpected --version output" >&2; exit 1; }

step "start flareship serve in the container on port $PORT"
mkdir -p "$WORK/data" && chown 10001:10001 "$WORK/data"
key=$(python3 -c "from cryptography.hazmat.primitives.asymmetric import rsa; from cryptography.hazmat.primitives import serialization as s; print(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()).decode())" 2>/dev/null \
  || openssl genrsa 2048 2>/dev/null)
buildah run --isolation chroot -v "$WORK/data:/var/lib/flareship/data" \
  --env PORT="$PORT" --env GITHUB_APP_ID=1 --env GITHUB_WEBHOOK_SECRET=image-check \
  --env GITHUB_PRIVATE_KEY="$key" "$ctr" -- flareship serve >"$WORK/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 60); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
    step "GET /healthz answered 200 from the container"
    [ -s "$WORK/data/flareship.db" ] || { echo "build-image: no SQLite file on the data volume" >&2; exit 1; }
    echo "image size: $size"
    exit 0
  fi
  kill -0 "$server" 2>/dev/null || break
  sleep 1
done
echo "build-image: the container did not answer /healthz; its log:" >&2
tail -40 "$WORK/serve.log" >&2
exit 1
