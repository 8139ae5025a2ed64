# Sourced by the benchmark scripts (after `set -euo pipefail`): to the repository's root, the
# shared options (--repeat R, --json FILE) and helpers.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
REPEAT=3
JSON=""

# bench_args "$@": --repeat R and --json FILE; anything else is a mistake (exit 2).
bench_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --repeat) REPEAT=$2; shift 2 ;;
      --json) JSON=$2; shift 2 ;;
      *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
  done
}

# secs T0 T1: seconds between two `date +%s.%N` readings, to the millisecond.
secs() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 3))" "$1" "$2"; }
