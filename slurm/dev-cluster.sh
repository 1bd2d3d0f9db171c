#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine (Debian, as root), for ptblm's tests and for trying jobs by hand.
#
#   slurm/dev-cluster.sh install   apt-get the Slurm daemons and munge (skipped when already installed)
#   slurm/dev-cluster.sh start     write /etc/slurm/slurm.conf, start munged, slurmctld and slurmd, wait for the node
#   slurm/dev-cluster.sh stop      shut the daemons down (queued jobs are kept and resume on the next start)
#   slurm/dev-cluster.sh status    daemons, sinfo and squeue; exits 3 when the cluster is not running
#
# The config goes to /etc/slurm/slurm.conf, where Debian's sbatch/squeue/scontrol look by default, so shells and
# Python code need no SLURM_CONF. Daemon state and logs live in $PTBLM_SLURM_STATE_DIR (/var/lib/ptblm-dev-cluster).
# Other settings: PTBLM_SLURM_START_TIMEOUT (seconds to wait for the node, 60),
#                 PTBLM_SLURM_KILL_WAIT (seconds between SIGTERM and SIGKILL when a job is stopped, 30).
# GPUs: the node declares gpu gres. With real /dev/nvidiaN files those are used; otherwise two stand-in character
# devices under /run/ptblm-dev-cluster let Slurm schedule --gres=gpu:N jobs (which then run on the CPU).
set -euo pipefail

readonly TEMPLATE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/dev-cluster"
readonly SLURM_CONF=/etc/slurm/slurm.conf
readonly GRES_CONF=/etc/slurm/gres.conf
# Stand-in GPU device files (copies of /dev/null) for a machine without NVIDIA GPUs; never created under /dev.
readonly STAND_IN_GPU_DIR=/run/ptblm-dev-cluster
readonly STAND_IN_GPU_COUNT=2
readonly MARKER="Written by ptblm slurm/dev-cluster.sh"
readonly STATE_DIR="${PTBLM_SLURM_STATE_DIR:-/var/lib/ptblm-dev-cluster}"
readonly LOG_DIR="$STATE_DIR/log"
readonly START_TIMEOUT_S="${PTBLM_SLURM_START_TIMEOUT:-60}"
readonly KILL_WAIT_S="${PTBLM_SLURM_KILL_WAIT:-30}"
readonly PACKAGES=(slurmctld slurmd slurm-client munge)
readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_PID_FILE=/run/munge/munged.pid
readonly NODE="$(hostname -s)"

say() { printf 'dev-cluster: %s\n' "$*"; }
die() { printf 'dev-cluster: error: %s\n' "$*" >&2; exit 1; }

need_root() {
  [[ $EUID -eq 0 ]] || die "run me as root: I install packages, write $SLURM_CONF and start daemons"
}

# daemon_pid PID_FILE NAME: print the pid in PID_FILE when it is a live process called NAME, else fail.
daemon_pid() {
  local pid_file=$1 name=$2 pid
  [[ -r $pid_file ]] || return 1
  pid=$(<"$pid_file")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(</proc/$pid/comm) == "$name" ]] || return 1
  echo "$pid"
}

is_running() { daemon_pid "$@" >/dev/null; }

# A daemon deletes its pid file before it is gone, so stopping waits for the process itself (a zombie counts as gone).
has_exited() {
  local pid=$1 stat
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
  [[ $stat =~ ^[0-9]+\ \(.*\)\ Z ]]
}

munge_works() { munge --no-input 2>/dev/null | unmunge >/dev/null 2>&1; }

# What went wrong, for people: the node's state and reason as slurmctld sees it, and the end of every daemon log.
show_logs() {
  local log
  sinfo --noheader --nodes="$NODE" --format='node %N is %T (reason: %E)' >&2 2>/dev/null || true
  for log in "$LOG_DIR"/*.log; do
    [[ -e $log ]] || continue
    printf '\n--- last lines of %s ---\n' "$log" >&2
    tail -n 25 "$log" >&2
  done
}

# wait_until SECONDS WHAT COMMAND...: poll COMMAND every half second; on timeout show the daemon logs and fail.
# WHAT completes "gave up waiting for ...".
wait_until() {
  local timeout_s=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout_s))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      show_logs
      die "gave up after ${timeout_s}s waiting for $what (daemon logs above, all of them in $LOG_DIR)"
    fi
    sleep 0.5
  done
}

cmd_install() {
  need_root
  local package missing=()
  for package in "${PACKAGES[@]}"; do
    dpkg-query --show --showformat='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    say "already installed: ${PACKAGES[*]}"
    return
  fi
  say "installing ${missing[*]}"
  local apt_log
  apt_log=$(mktemp)
  # Quiet when it works, the whole apt output when it does not.
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    die "apt-get could not install ${missing[*]} (its output is above)"
  fi
  rm -f "$apt_log"
}

# The GPU device files, one a line: the real /dev/nvidiaN when there are any, else the stand-ins (made if missing).
gpu_files() {
  local real=(/dev/nvidia[0-9]*) index
  if [[ -e ${real[0]} ]]; then
    printf '%s\n' "${real[@]}"
    return
  fi
  install -d -m 0755 "$STAND_IN_GPU_DIR"
  for ((index = 0; index < STAND_IN_GPU_COUNT; index++)); do
    [[ -c $STAND_IN_GPU_DIR/gpu$index ]] || mknod -m 0666 "$STAND_IN_GPU_DIR/gpu$index" c 1 3
    echo "$STAND_IN_GPU_DIR/gpu$index"
  done
}

# render TEMPLATE GPU_FILES...: fill a template with this machine's hardware as slurmd itself sees it
# ("NodeName=vm CPUs=2 Boards=1 ...") and with the number of its GPUs.
render() {
  local template=$1
  shift

  local -A hardware
  local fields field key
  read -r -a fields < <(slurmd -C)
  for field in "${fields[@]}"; do
    hardware[${field%%=*}]=${field#*=}
  done
  for key in CPUs Boards SocketsPerBoard CoresPerSocket ThreadsPerCore RealMemory; do
    [[ -n ${hardware[$key]:-} ]] || die "'slurmd -C' printed no $key= (it printed: ${fields[*]})"
  done
  sed -e "s|@MARKER@|$MARKER|" \
    -e "s|@HOST@|$NODE|g" \
    -e "s|@STATE_DIR@|$STATE_DIR|g" \
    -e "s|@KILL_WAIT@|$KILL_WAIT_S|" \
    -e "s|@CPUS@|${hardware[CPUs]}|" \
    -e "s|@BOARDS@|${hardware[Boards]}|" \
    -e "s|@SOCKETS_PER_BOARD@|${hardware[SocketsPerBoard]}|" \
    -e "s|@CORES_PER_SOCKET@|${hardware[CoresPerSocket]}|" \
    -e "s|@THREADS_PER_CORE@|${hardware[ThreadsPerCore]}|" \
    -e "s|@REAL_MEMORY@|${hardware[RealMemory]}|" \
    -e "s|@MEM_PER_CPU@|$((hardware[RealMemory] / hardware[CPUs]))|" \
    -e "s|@GPU_COUNT@|$#|" \
    "$template"
}

# Write slurm.conf and gres.conf when either differs; a running Slurm is stopped first so that it rereads everything.
write_conf() {
  local -a gpus
  mapfile -t gpus < <(gpu_files)
  local -A wanted=([$SLURM_CONF]="$(render "$TEMPLATE_DIR/slurm.conf.in" "${gpus[@]}")"
    [$GRES_CONF]="$(render "$TEMPLATE_DIR/gres.conf.in" "${gpus[@]}" && printf 'Name=gpu File=%s\n' "${gpus[@]}")")
  local conf changed=()
  for conf in "$SLURM_CONF" "$GRES_CONF"; do
    if [[ -e $conf ]] && ! grep -qF "$MARKER" "$conf"; then
      die "$conf was not written by this script (it lacks the line '# $MARKER'): move it away to use the dev cluster"
    fi
    [[ -e $conf && $(<"$conf") == "${wanted[$conf]}" ]] || changed+=("$conf")
  done
  ((${#changed[@]} > 0)) || return 0
  if is_running "$STATE_DIR/slurmctld.pid" slurmctld || is_running "$STATE_DIR/slurmd.pid" slurmd; then
    say "${changed[*]} change: restarting Slurm"
    stop_slurm
  fi
  install -d -m 0755 "$(dirname "$SLURM_CONF")"
  for conf in "${changed[@]}"; do
    printf '%s\n' "${wanted[$conf]}" >"$conf"
    say "wrote $conf"
  done
  say "GPUs for the scheduler: ${gpus[*]}"
}

start_munge() {
  if munge_works; then
    say "munged already running"
    return
  fi
  if [[ ! -e $MUNGE_KEY ]]; then
    mungekey --create --keyfile="$MUNGE_KEY"
    say "created $MUNGE_KEY"
  fi
  chown munge:munge "$MUNGE_KEY"
  chmod 0400 "$MUNGE_KEY"
  install -d -o munge -g munge -m 0755 /run/munge
  touch "$LOG_DIR/munged.log"
  chown munge:munge "$LOG_DIR/munged.log"
  runuser -u munge -- munged --log-file="$LOG_DIR/munged.log"
  wait_until 10 "munged to answer" munge_works
  say "started munged"
}

# start_daemon NAME: start slurmctld or slurmd unless it already runs; both fork into the background.
start_daemon() {
  local name=$1
  if is_running "$STATE_DIR/$name.pid" "$name"; then
    say "$name already running"
    return
  fi
  "$name" || { show_logs; die "$name failed to start (daemon logs above)"; }
  wait_until 10 "$name to write $STATE_DIR/$name.pid" is_running "$STATE_DIR/$name.pid" "$name"
  say "started $name"
}

node_is_up() {
  local state
  state=$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null) || return 1
  [[ $state =~ ^(idle|mixed|allocated|completing)$ ]]
}

cmd_start() {
  need_root
  command -v slurmctld >/dev/null || die "Slurm is not installed: run '$0 install' first"
  install -d -m 0755 "$STATE_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$LOG_DIR"
  write_conf
  start_munge
  start_daemon slurmctld
  start_daemon slurmd
  wait_until "$START_TIMEOUT_S" "node $NODE to show up idle in sinfo" node_is_up
  say "node $NODE is $(sinfo --noheader --nodes="$NODE" --format=%T); partition debug is ready"
}

stop_slurm() {
  local ctld_pid slurmd_pid
  ctld_pid=$(daemon_pid "$STATE_DIR/slurmctld.pid" slurmctld) || ctld_pid=""
  slurmd_pid=$(daemon_pid "$STATE_DIR/slurmd.pid" slurmd) || slurmd_pid=""
  if [[ -n $ctld_pid ]]; then
    local job_count
    job_count=$(squeue --noheader --format=%i 2>/dev/null | wc -l)
    ((job_count == 0)) ||
      say "$job_count job(s) still queued or running: Slurm picks them up again on the next start (scancel drops them)"
    scontrol shutdown # stops slurmctld and every slurmd
  elif [[ -n $slurmd_pid ]]; then
    kill -TERM "$slurmd_pid"
  fi
  [[ -z $ctld_pid ]] || wait_until 30 "slurmctld (pid $ctld_pid) to exit" has_exited "$ctld_pid"
  [[ -z $slurmd_pid ]] || wait_until 30 "slurmd (pid $slurmd_pid) to exit" has_exited "$slurmd_pid"
}

cmd_stop() {
  need_root
  stop_slurm
  local munged_pid
  if munged_pid=$(daemon_pid "$MUNGE_PID_FILE" munged); then
    munged --stop >/dev/null
    wait_until 10 "munged (pid $munged_pid) to exit" has_exited "$munged_pid"
  fi
  say "stopped"
}

cmd_status() {
  local name pid_file running=1
  for name in slurmctld slurmd; do
    pid_file="$STATE_DIR/$name.pid"
    if is_running "$pid_file" "$name"; then
      say "$name running (pid $(<"$pid_file"))"
    else
      say "$name not running"
      running=0
    fi
  done
  munge_works && say "munged running" || say "munged not running"
  if ((running == 0)); then
    return 3
  fi
  sinfo
  squeue
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 install|start|stop|status" >&2
    exit 2
    ;;
esac
