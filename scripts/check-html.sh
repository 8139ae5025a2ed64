#!/usr/bin/env bash
# Renders an e2e-plan report.html in headless Chromium, saves a PNG screenshot and checks that the
# rendered DOM has the expected structure (timeline rows, bars, the run title).
#
#   scripts/check-html.sh [REPORT_HTML] [OUT_PNG]
#
# REPORT_HTML defaults to target/e2e/report.html; OUT_PNG to REPORT_HTML with .png instead of .html.
# Installs Debian's chromium when /usr/bin/chromium is absent (needs root and apt).
# Exits non-zero, saying why, when the page cannot be rendered or lacks the expected structure.
# Prints the PNG's path on success.
set -euo pipefail

report=${1:-target/e2e/report.html}
die() { echo "check-html: $*" >&2; exit 1; }

[[ -f $report ]] || die "no such file: $report (run 'e2e-plan apply PLAN' first)"
report_abs=$(realpath -- "$report")
out=${2:-${report_abs%.html}.png}
out_abs=$(realpath -m -- "$out")
mkdir -p -- "$(dirname -- "$out_abs")"

chromium=/usr/bin/chromium
if [[ ! -x $chromium ]]; then
    [[ $(id -u) -eq 0 ]] || die "$chromium is missing and installing it needs root"
    echo "check-html: installing chromium …" >&2
    apt-get update -qq && apt-get install -y -qq chromium >&2 \
        || die "could not install chromium with apt-get"
    [[ -x $chromium ]] || die "chromium installed but $chromium is still missing"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/check-html.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# One fresh profile per invocation; a bounded run so a stuck browser cannot hang the script.
run_chromium() {
    local profile
    profile=$(mktemp -d "$work/profile.XXXXXX")
    timeout --kill-after=10s 90s "$chromium" \
        --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --window-size=1400,900 \
        "$@" "file://$report_abs"
}

rm -f -- "$out_abs"
if ! run_chromium --screenshot="$out_abs" >"$work/shot.log" 2>&1; then
    cat "$work/shot.log" >&2
    die "chromium failed to take the screenshot"
fi
[[ -s $out_abs ]] || { cat "$work/shot.log" >&2; die "chromium wrote no screenshot to $out_abs"; }
# PNG signature: \x89PNG
[[ $(head -c 4 -- "$out_abs" | od -An -tx1 | tr -d ' \n') == 89504e47 ]] \
    || die "$out_abs is not a PNG"

if ! run_chromium --dump-dom >"$work/dom.html" 2>"$work/dom.log"; then
    cat "$work/dom.log" >&2
    die "chromium failed to dump the DOM"
fi
[[ -s $work/dom.html ]] || { cat "$work/dom.log" >&2; die "chromium dumped an empty DOM"; }

# Structure checks on the DOM as the browser parsed it.
problems=()
# grep finds nothing → 0, not a silent exit (set -e with pipefail).
count() { { grep -oE "$1" "$work/dom.html" || true; } | wc -l; }
rows=$(count 'class="row"')
bars=$(count 'class="bar"')
(( rows > 0 )) || problems+=("no element with class \"row\" (one timeline row per test file)")
(( bars > 0 )) || problems+=("no element with class \"bar\" (the phase bars in the timeline)")
grep -q 'e2e-plan run' "$work/dom.html" || problems+=("the text \"e2e-plan run\" (title/heading) is missing")
grep -q 'class="axis"' "$work/dom.html" || problems+=("no time axis (class \"axis\")")
grep -q '<h1>' "$work/dom.html" || problems+=("no <h1> heading")

if (( ${#problems[@]} )); then
    echo "check-html: $report does not have the expected structure:" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    echo "check-html: screenshot kept at $out_abs" >&2
    exit 1
fi

echo "check-html: ok: $rows row(s), $bars bar(s)" >&2
echo "$out_abs"
