#!/usr/bin/env bash
# End-to-end test of the dashboard in a real terminal (tmux, 120x36), as a user would drive it:
#   open `mxdash --runs-dir X` on an empty dir -> Launch view -> pick experiments/optimizers.toml, parallel 2,
#   --set train.epochs=300 -> ctrl+l -> runs appear in the Runs view -> curves grow in the Curves view -> stop the
#   rmsprop run (s, y) -> quit (q) -> `mxdash ls` shows the sweep finishing without the dashboard: 4 completed, 1 stopped.
#   Also (issue 7): the Curves of the running sweep keep a readable loss axis, `?` lists the keys of the view, and the
#   Compare view has the run ids as headers.
# Usage: benchmarks/tmux_e2e.sh [MXDASH_BIN]   (default: the worktree's .venv/bin/mxdash, else on PATH)
# Exit 0 when every check passed; screens are saved in $OUT (printed at the end) for a look.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MXDASH=${1:-${MXDASH:-$( [ -x "$ROOT/.venv/bin/mxdash" ] && echo "$ROOT/.venv/bin/mxdash" || command -v mxdash )}}
OUT=$(mktemp -d /tmp/mxdash-e2e.XXXXXX)
RUNS="$OUT/runs"
SESSION="mxdash-e2e-$$"
TMUX_CMD=(tmux -L "$SESSION")  # a private tmux server: other tmux users on the machine cannot disturb it
W=120 H=36

cleanup() { "${TMUX_CMD[@]}" kill-server 2>/dev/null || true; }
trap cleanup EXIT

screen() { "${TMUX_CMD[@]}" capture-pane -p -t "$SESSION"; }
keys() { "${TMUX_CMD[@]}" send-keys -t "$SESSION" "$@"; }
fail() { echo "FAIL: $*"; "${TMUX_CMD[@]}" capture-pane -p -S -300 -t "$SESSION" | tee "$OUT/fail.txt" | tail -60; echo "screens in $OUT"; exit 1; }
pass() { echo "ok   $*"; }
# wait_for PATTERN SECONDS [NAME]: until the screen matches (grep -E)
wait_for() {
  local pattern=$1 limit=$2 name=${3:-$1} t=0
  while ! screen | grep -Eq -- "$pattern"; do
    sleep 0.25; t=$((t + 1))
    [ $t -ge $((limit * 4)) ] && fail "waited ${limit}s for: $name"
  done
  screen > "$OUT/$(echo "$name" | tr -c 'a-zA-Z0-9' _).txt"
  pass "$name"
}

command -v tmux >/dev/null || { echo "tmux is not installed"; exit 2; }
[ -x "$MXDASH" ] || { echo "no mxdash executable ($MXDASH)"; exit 2; }
cd "$ROOT"

# 1. open on a runs dir that does not exist: empty state, nothing created
"${TMUX_CMD[@]}" new-session -d -s "$SESSION" -x $W -y $H "TEXTUAL_COLOR_SYSTEM=256 $MXDASH --runs-dir $RUNS; sleep 600"
wait_for "No runs yet" 15 "empty state"
[ ! -e "$RUNS" ] || fail "the runs dir was created before any launch"
pass "nothing created before a launch"

# 2. Launch view: highlight optimizers.toml, see its preview
keys 6
wait_for "Experiments" 10 "launch view"
for _ in $(seq 1 20); do
  screen | grep -Eq "optimizers +[0-9]+ runs" && break
  keys Down; sleep 0.3
done
wait_for "optimizers +5 runs" 5 "optimizers.toml preview (5 runs)"
keys Enter                 # focus the parallel input
sleep 0.3
keys 2 Tab                 # parallel 2, then the --set input
sleep 0.3
keys "train.epochs=300"
sleep 0.3
keys C-l
wait_for "started optimizers-[0-9]+" 120 "launched detached"
EXP=$(screen | grep -Eo "started optimizers-[0-9]+" | head -1 | cut -d' ' -f2)
pass "experiment $EXP"

# 3. runs appear and train
keys 1
wait_for "$EXP\.5" 20 "5 runs in the table"
wait_for "running" 120 "a run is running"

# 4. curves grow: the Curves view shows braille plot cells, and they change while training
keys 2
wait_for "(⣀|⠉|⡇|⢸|⣿|⠒)" 60 "curves drawn"
sleep 4
before=$(screen | md5sum)
sleep 5
after=$(screen | md5sum)
[ "$before" != "$after" ] || fail "the curves did not change while runs train"
pass "curves grow"
screen | grep -Eq "^ *[0-9.]+[kMG]┤" && fail "a loss tick in the thousands or more: the axis is not in the readable range"
pass "loss axis in the readable range"
keys "?"
wait_for "everywhere" 10 "? lists the keys"
keys Escape
sleep 0.5
keys 5
wait_for "$EXP\.1 +$EXP\.2" 20 "compare: run ids as headers"

# 5. stop the rmsprop run (the last of the grid: queued or running now): filter to it, s, y
keys 1
sleep 0.5
keys /
sleep 0.3
keys "opt:rmsprop" Enter
wait_for "$EXP\.5 " 10 "filtered to the rmsprop run"
wait_for "space Select" 10 "table focused again (footer shows its keys)"
keys s
wait_for "Stop 1 run" 10 "stop confirmation"
keys y
wait_for "$EXP\.5 .*stopped" 120 "rmsprop run stopped"

# 6. quit; the other runs go on detached
keys Enter
sleep 0.3
keys q
sleep 1
pass "quit"

# 7. the sweep finishes without the dashboard
for _ in $(seq 1 240); do
  if ! "$MXDASH" ls --runs-dir "$RUNS" | grep -Eq "running|queued"; then break; fi
  sleep 1
done
"$MXDASH" ls --runs-dir "$RUNS" | tee "$OUT/ls.txt"
completed=$(grep -c "completed" "$OUT/ls.txt" || true)
stopped=$(grep -c "stopped" "$OUT/ls.txt" || true)
[ "$completed" -eq 4 ] || fail "expected 4 completed runs, got $completed"
[ "$stopped" -eq 1 ] || fail "expected 1 stopped run, got $stopped"
pass "4 completed, 1 stopped (finished without the dashboard)"
echo "PASS: tmux end-to-end (screens in $OUT)"
