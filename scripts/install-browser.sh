#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the HTML report's browser test.
# Installs them with apt when missing (as root, or through passwordless sudo); otherwise says
# what to run. Exit status 0 when both are present afterwards.
set -uo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
packages=(chromium chromium-driver)
if [ "$(id -u)" -eq 0 ]; then
    run=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    run=(sudo -n)
else
    echo "install-browser: Debian chromium and chromium-driver are missing and this user" \
         "cannot install them; run: sudo apt-get install -y ${packages[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${run[@]}" apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null; then
    "${run[@]}" apt-get update >/dev/null
    "${run[@]}" apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null || exit 1
fi
command -v chromium >/dev/null && command -v chromedriver >/dev/null
