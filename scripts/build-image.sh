#!/usr/bin/env bash
# Build deploy/Containerfile here, without a Docker engine or a registry, and
# run the image smoke test inside it (`make image`).
#
#   1. a Debian bookworm base: debootstrap --variant=minbase, imported with
#      podman import, plus python3.11 and its venv module (installed with
#      buildah run). Cached as localhost/xrouter-base:bookworm; delete it
#      (podman rmi) to rebuild from scratch.
#   2. buildah build --isolation chroot -f deploy/Containerfile with
#      BASE_IMAGE=localhost/xrouter-base:bookworm (a Docker host builds the
#      same file from python:3.11-slim-bookworm instead).
#   3. buildah run deploy/image_smoke.py in a container of that image as its
#      own user: /healthz and one chat call to the built-in emulators, on
#      loopback ports IMAGE_SMOKE_PORT (gateway) and the three from
#      IMAGE_SMOKE_EMULATOR_PORT.
#
# Needs root (debootstrap, buildah). Installs debootstrap, podman and buildah
# from Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=localhost/xrouter-base:bookworm
IMAGE=${IMAGE:-localhost/xrouter:dev}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SMOKE_PORT=${IMAGE_SMOKE_PORT:-27000}
SMOKE_EMULATOR_PORT=${IMAGE_SMOKE_EMULATOR_PORT:-27080}
# podman run fails on setrlimit in this sandbox; buildah's chroot isolation works.
export BUILDAH_ISOLATION=chroot

missing=()
for tool in debootstrap:debootstrap podman:podman buildah:buildah; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /var/tmp/xrouter-image.XXXXXX)
containers=()
cleanup() {
  for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if ! podman image exists "$BASE"; then
  echo "== base: debootstrap --variant=minbase bookworm"
  start=$SECONDS
  debootstrap --variant=minbase bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
  tar -C "$work/rootfs" -c . | podman import - localhost/xrouter-minbase:bookworm >/dev/null
  rm -rf "$work/rootfs"
  c=$(buildah from --pull-never localhost/xrouter-minbase:bookworm)
  containers+=("$c")
  buildah run "$c" -- sh -c 'apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         python3.11 python3.11-venv >/dev/null \
    && rm -rf /var/lib/apt/lists/*'
  buildah commit --quiet --rm "$c" "$BASE" >/dev/null
  containers=()
  podman rmi localhost/xrouter-minbase:bookworm >/dev/null
  echo "   base built in $((SECONDS - start))s"
fi

# pip inside the build trusts what pip trusts here (a TLS-inspecting proxy's
# CA included), passed as a build secret so it never lands in a layer.
secret=()
ca=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
[ -n "$ca" ] && [ -f "$ca" ] && secret=(--secret "id=build-ca,src=$ca")
echo "== image: buildah build -f deploy/Containerfile -t $IMAGE"
start=$SECONDS
buildah build --isolation chroot --pull-never --layers --format docker \
  --build-arg BASE_IMAGE="$BASE" "${secret[@]}" -f deploy/Containerfile -t "$IMAGE" . >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log" >&2; exit 1; }
echo "   built in $((SECONDS - start))s"
grep -A1 "SHA-256\|no CA certificate" "$work/build.log" || true

echo "== smoke test inside $IMAGE"
c=$(buildah from --pull-never "$IMAGE")
containers+=("$c")
user=$(buildah inspect --type container --format '{{.OCIv1.Config.User}}' "$c")
[ -n "$user" ] && [ "${user%%:*}" != "0" ] && [ "${user%%:*}" != root ] \
  || { echo "image USER is '$user', expected a non-root uid" >&2; exit 1; }
entrypoint=$(buildah inspect --type container --format '{{.OCIv1.Config.Entrypoint}}' "$c")
[ "$entrypoint" = '[/usr/bin/tini --]' ] \
  || { echo "image ENTRYPOINT is $entrypoint, expected tini" >&2; exit 1; }
buildah run --user "$user" "$c" -- python deploy/image_smoke.py \
  --port "$SMOKE_PORT" --emulator-port "$SMOKE_EMULATOR_PORT"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "== $IMAGE OK ($((size / 1024 / 1024)) MiB)"
