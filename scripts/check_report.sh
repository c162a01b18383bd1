#!/usr/bin/env bash
# Renders a rain report page in headless Chromium (Debian's package:
# apt-get install chromium) and checks that it is self-contained.
#
#   scripts/check_report.sh rain-out/report.html [screenshot.png]
#
# Checks: no reference to anything outside the file (src/href to a URL,
# CSS url() or @import, <script>, <link>); Chromium parses it into a DOM
# with every section and inline SVG plot; and it renders to a PNG to look
# at (default: the page's name with .png). Chromium runs with its network
# features off and every host mapped to nowhere, so the page cannot load
# anything even if it tried. Never run in CI.
set -euo pipefail
page=${1:?usage: check_report.sh REPORT.html [SCREENSHOT.png]}
shot=${2:-${page%.html}.png}
chrome=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$chrome" ] || { echo "no Chromium (apt-get install chromium)"; exit 2; }
status=0

if grep -Eqi '(src|href)=["'"'"']?(https?:|//)|url\(|@import|<script|<link' "$page"; then
  echo "FAIL: $page refers to something outside itself:"
  grep -Eoi '.{0,40}((src|href)=["'"'"']?(https?:|//)|url\(|@import|<script|<link).{0,40}' "$page" | head
  status=1
else
  echo "ok: no external references, no scripts, no stylesheets to fetch"
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --host-resolver-rules="MAP * ~NOTFOUND" --user-data-dir="$profile")
dom=$("$chrome" "${flags[@]}" --dump-dom "file://$(realpath "$page")" 2>/dev/null)
sections=$(grep -o '<section' <<<"$dom" | wc -l)
svgs=$(grep -o '<svg' <<<"$dom" | wc -l)
echo "Chromium's DOM: $sections sections, $svgs inline SVG plots"
[ "$sections" -ge 4 ] && [ "$svgs" -ge 1 ] || { echo "FAIL: sections or plots missing"; status=1; }

"$chrome" "${flags[@]}" --hide-scrollbars --window-size=1280,4200 --screenshot="$shot" "file://$(realpath "$page")" >/dev/null 2>&1
if [ -s "$shot" ]; then echo "ok: rendered to $shot"; else echo "FAIL: no screenshot"; status=1; fi
exit $status
