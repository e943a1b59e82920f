# Shared by run.sh and demo.sh (sourced, not run): start processes in the background,
# wait until they answer, and stop all of them, once, however the script ends.
# Ctrl-C reaches every process of the foreground group; the EXIT trap then stops
# whatever is left and removes the temporary directory. No `kill 0`: it would signal
# this shell too and re-enter the trap.

BIN="${VENV:-.venv}/bin"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/reusely-$1.XXXXXX")
pids=()

stop_all() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

answers() {  # URL: true once it answers 2xx
  "$BIN/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "$1" 2>/dev/null
}

wait_until_up() {  # NAME URL LOG: the last started process must answer URL within 30 s
  local pid=${pids[-1]}
  for _ in $(seq 150); do
    answers "$2" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the $1 did not start (is its port taken?); the end of $3:" >&2
      tail -n 5 "$3" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "the $1 did not answer on $2 within 30 s; see $3" >&2
  exit 1
}

start_sandbox() {  # BIND
  "$BIN/reusely-gateway" sandbox --bind "$1" > "$tmp/sandbox.log" 2>&1 &
  pids+=($!)
  wait_until_up sandbox "http://$1/_sandbox/state" "$tmp/sandbox.log"
}

start_gateway() {  # POLICY BIND METRICS_BIND
  "$BIN/reusely-gateway" serve --config "$1" --bind "$2" --metrics-bind "$3" \
    > "$tmp/gateway.log" 2>&1 &
  pids+=($!)
  gateway_pid=$!
  wait_until_up gateway "http://$2/readyz" "$tmp/gateway.log"
}

show_gateway_log() {  # from now on, the gateway's log lines on this terminal
  tail -n 0 -f "$tmp/gateway.log" &
  pids+=($!)
}
