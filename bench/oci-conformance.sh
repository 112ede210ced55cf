#!/usr/bin/env bash
# The OCI runtime-tools validation suite against nsbox-runc, crun and runc in one run.
#
#   bash bench/oci-conformance.sh PATH_TO_RUNTIME_TOOLS [TEST_NAME...]
#   bash bench/oci-conformance.sh --judge TAP_LOG EXIT_CODE [STDERR_LOG VALUE]   (one cell)
#
# PATH_TO_RUNTIME_TOOLS is a checkout of github.com/opencontainers/runtime-tools (tested at
# 260e151) with its validation binaries built (see `build_help` below). Each validation test
# (validation/NAME/NAME.t) runs once per runtime, one after the other, as root; a test gets
# TEST_TIMEOUT seconds (default 120). The table shows, per test ("group") and runtime, `pass`
# (every TAP point ok or skipped), `FAIL` (a point not ok, a wrong plan or a non-zero exit),
# `skip` (the whole group skipped) with the points passed/total; a group that checks a refusal
# (see `refusal` below) is `pass refused` when the runtime refused the bad value. TAP logs stay in
# $OUT (default a temporary directory, printed at the end).
#
# Environment: RUNTIMES="nsbox-runc crun runc" (names or paths), NSBOX_RUNC (default this
# tree's dist/nsbox-runc.cjs), TEST_TIMEOUT, OUT.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)

# One TAP log → "status passed total". A test program may print several TAP streams one after
# the other (linux_cgroups_cpus: its cases, then "TAP version 13" and the empty-config case,
# `1..0` where the host lacks the files it compares with): their plans add up.
judge() { # log exitcode
  awk -v rc="$2" '
    /^1\.\.[0-9]+/ { plan += substr($1, 4) + 0; hasplan = 1 }
    /^ok [0-9]+/ { n++; if ($0 ~ /# [Ss][Kk][Ii][Pp]/) s++; else p++ }
    /^not ok [0-9]+/ { n++; if ($0 ~ /# TODO/) t++; else f++ }
    END {
      st = "pass"
      if (rc != 0 || f > 0 || !hasplan || n != plan || n == 0) st = "FAIL"
      else if (s == n) st = "skip"
      printf "%s %d %d\n", st, p + s + t, (hasplan && plan > n) ? plan : n
    }' "$1"
}

# The `*_fail` groups that check a refusal (process_capabilities_fail, process_rlimits_fail)
# print no TAP at all: they put an unknown capability or rlimit in config.json and call
# RuntimeInsideValidate; when create (or start) fails they exit 0 silently, and only when the
# runtime accepts the value do they print the container's TAP and exit 1. So such a group
# passes when it exits 0 without TAP and the runtime's error (which the test copies to its
# stderr after "failed to create the container") names the bad value: a runtime that cannot
# run any container here also exits 0 silently, and is counted `FAIL other` (refused, but not
# for that value).
declare -A refusal=([process_capabilities_fail]=CAP_TEST [process_rlimits_fail]=RLIMIT_TEST)
judge_refusal() { # log errlog exitcode value
  if [ "$3" = 0 ] && ! grep -qE '^(not )?ok [0-9]+|^1\.\.[0-9]+' "$1" &&
    grep -qE 'failed to (create|start) the container' "$2"; then
    if grep -q -- "$4" "$2"; then echo "pass refused"; else echo "FAIL other"; fi
  else
    judge "$1" "$3" | awk '{ print "FAIL", $2 "/" $3 }'
  fi
}

# `--judge LOG RC [ERRLOG VALUE]`: the cell one log gets (a refusal group's with ERRLOG and the
# value it must name), without running anything (test/unit/oci-conformance-judge.test.ts)
if [ "${1:-}" = --judge ]; then
  if [ $# -ge 5 ]; then judge_refusal "$2" "$4" "$3" "$5"; else judge "$2" "$3"; fi
  exit 0
fi

build_help() {
  cat >&2 <<EOF
The runtime-tools validation binaries are missing in ${1:-PATH_TO_RUNTIME_TOOLS}.
Build them (offline, from its vendored modules) with Go 1.19:
  apt-get install -y golang-1.19-go
  cd PATH_TO_RUNTIME_TOOLS   # a checkout of opencontainers/runtime-tools at 260e151
  PATH=/usr/lib/go-1.19/bin:\$PATH GOFLAGS=-mod=vendor GOPROXY=off \\
    make runtimetest validation-executables COMMIT=260e151
  strip validation/*/*.t runtimetest   # optional: 137 MB instead of 216
(The project's sessions keep a built copy in shared/runtime-tools-src.)
EOF
}

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
  echo "usage: bash bench/oci-conformance.sh PATH_TO_RUNTIME_TOOLS [TEST_NAME...]" >&2
  build_help "${1:-}"
  exit 2
fi
tools=$(cd "$1" && pwd)
shift
if [ ! -x "$tools/runtimetest" ] || ! ls "$tools"/validation/*/*.t >/dev/null 2>&1; then
  build_help "$tools"
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "oci-conformance: run as root (the validation suite creates containers as root)" >&2
  exit 2
fi

NSBOX_RUNC=${NSBOX_RUNC:-$here/dist/nsbox-runc.cjs}
RUNTIMES=${RUNTIMES:-nsbox-runc crun runc}
TEST_TIMEOUT=${TEST_TIMEOUT:-120}
OUT=${OUT:-$(mktemp -d /tmp/oci-conformance.XXXXXX)}
mkdir -p "$OUT"

# Resolve each runtime name to a path; a missing one is reported and left out. Each runs
# through a wrapper that gives it a --root of its own under $OUT: the suite does not always
# delete what it made, and the runtimes' default roots may hold other callers' containers
# (podman's with runc). What a test left is force-deleted after it (and counted).
declare -a names paths real
for r in $RUNTIMES; do
  case $r in
    nsbox-runc) p=$NSBOX_RUNC ;;
    */*) p=$r ;;
    *) p=$(command -v "$r" || true) ;;
  esac
  if [ -z "$p" ] || [ ! -x "$p" ]; then
    echo "oci-conformance: runtime $r not found; left out" >&2
    continue
  fi
  n=$(basename "$r" .js)
  mkdir -p "$OUT/root-$n"
  printf '#!/bin/sh\nexec %q --root %q "$@"\n' "$p" "$OUT/root-$n" > "$OUT/$n.sh"
  chmod +x "$OUT/$n.sh"
  names+=("$n")
  paths+=("$OUT/$n.sh")
  real+=("$p")
done

# Force-deletes what a test left in a runtime's root; prints how many.
sweep() { # index
  local i=$1 left=0 id
  for id in $("${paths[$i]}" list -q 2>/dev/null); do
    "${paths[$i]}" delete --force "$id" >/dev/null 2>&1
    left=$((left + 1))
  done
  echo $left
}
[ ${#names[@]} -gt 0 ] || { echo "oci-conformance: no runtime to test" >&2; exit 2; }

if [ $# -gt 0 ]; then
  tests=("$@")
else
  tests=()
  for t in "$tools"/validation/*/*.t; do tests+=("$(basename "$t" .t)"); done
fi

declare -A passes fails leftovers
printf '%-36s' "test"; for n in "${names[@]}"; do printf ' %-14s' "$n"; done; echo
cd "$tools" || exit 2
for t in "${tests[@]}"; do
  bin=validation/$t/$t.t
  if [ ! -x "$bin" ]; then echo "oci-conformance: no test $t" >&2; continue; fi
  printf '%-36s' "$t"
  for i in "${!names[@]}"; do
    n=${names[$i]}
    log=$OUT/$n.$t.tap
    RUNTIME=${paths[$i]} timeout -k 5 "$TEST_TIMEOUT" "$bin" >"$log" 2>"$OUT/$n.$t.err"
    rc=$?
    [ $rc = 124 ] && echo "# timed out after ${TEST_TIMEOUT}s" >>"$OUT/$n.$t.err"
    left=$(sweep "$i")
    [ "$left" != 0 ] && { echo "# left $left container(s), force-deleted" >>"$OUT/$n.$t.err"; leftovers[$n]=$(( ${leftovers[$n]:-0} + left )); }
    if [ -n "${refusal[$t]:-}" ]; then
      read -r st cell < <(judge_refusal "$log" "$OUT/$n.$t.err" $rc "${refusal[$t]}")
    else
      read -r st p total < <(judge "$log" $rc)
      cell="$p/$total"
    fi
    case $st in
      pass|skip) passes[$n]=$(( ${passes[$n]:-0} + 1 )) ;;
      *) fails[$n]=$(( ${fails[$n]:-0} + 1 )) ;;
    esac
    printf ' %-14s' "$st $cell"
  done
  echo
done
printf '%-36s' "groups passed (pass or skip)"
for n in "${names[@]}"; do printf ' %-14s' "${passes[$n]:-0}/$(( ${passes[$n]:-0} + ${fails[$n]:-0} ))"; done
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); runtime-tools: $tools; logs: $OUT"
for i in "${!names[@]}"; do
  v=$("${real[$i]}" --version 2>/dev/null | head -1)
  echo "  ${names[$i]}: ${real[$i]} ($v); containers the suite left (force-deleted): ${leftovers[${names[$i]}]:-0}"
done
