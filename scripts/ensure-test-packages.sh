#!/usr/bin/env bash
# Installs the Debian packages the test suite uses as real peers and signal sources, when
# they are missing. Idempotent and quiet when everything is present. Needs root (CI is root).
set -euo pipefail

# command -> Debian package
declare -A NEEDED=(
  [espeak-ng]=espeak-ng     # real synthesized speech for the VAD tests
  [openssl]=openssl         # self-signed certificates for the TLS tests
  [sipp]=sip-tester        # SIP peer for the telephony conformance scenarios
  [baresip]=baresip        # real softphone driven over ctrl_tcp in the telephony tests
)

missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-test-packages: missing ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "ensure-test-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
