#!/usr/bin/env bash
# Creates and rotates the Secret nats-auth: terminal-apiserver's NATS user and
# password (keys "user" and "password", which the server's replicas read) and
# the users NATS takes (key "users.conf", which the NATS servers include). The
# manifests' NATS reloads users.conf when it changes and the replicas move to a
# new user and password by themselves once NATS takes them, so a rotation
# restarts nothing and cuts no shell (docs/operations.md, "Rotating the NATS
# credentials").
#
#   nats-auth.sh create   the Secret, with a new user and password, unless it exists
#   nats-auth.sh rotate   a new user and password, in three steps, each waited for:
#                           1. NATS takes the new user as well as the old;
#                           2. the replicas get the new one and move to it;
#                           3. NATS forgets the old one.
#                         Stopped anywhere, every user NATS lists still works:
#                         run it again (it keeps them until its step 3).
#
# Environment: NAMESPACE (terminal-system), KUBECTL (kubectl and its flags,
# split on spaces, e.g. "kubectl --context prod"), WAIT (seconds each step
# may take: 300; the kubelet updates a Secret's volume within about a minute
# and a half). Needs bash 3.2 or later, openssl and base64. The passwords
# never appear in a command line or an annotation: they go to kubectl in a
# file of this script's own, applied server-side.
set -euo pipefail
NAMESPACE=${NAMESPACE:-terminal-system}
read -r -a kubectl <<<"${KUBECTL:-kubectl}"
WAIT=${WAIT:-300}

k() { "${kubectl[@]}" -n "$NAMESPACE" "$@"; }
say() { echo "nats-auth: $*" >&2; }
die() { say "$*"; exit 1; }

umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A user of its own per rotation: NATS can take two at once, but not two
# passwords of one user.
new_user() { echo "terminal-apiserver-$(date -u +%Y%m%d-%H%M%S)"; }
new_password() { openssl rand -hex 32; }

# entry USER PASSWORD: one user in users.conf (hex passwords and these
# names need no escaping).
entry() { printf '  {user: "%s", password: "%s"}' "$1" "$2"; }

# users_conf ENTRY...: what NATS includes in its authorization block.
users_conf() {
  echo "# Written by artifacts/operations/nats-auth.sh: the users NATS takes."
  echo "users: ["
  printf '%s\n' "$@"
  echo "]"
}

# apply USER PASSWORD USERS-CONF: the whole Secret, created or replaced.
apply() {
  printf '%s' "$1" >"$work/user"
  printf '%s' "$2" >"$work/password"
  printf '%s\n' "$3" >"$work/users.conf"
  k create secret generic nats-auth --dry-run=client -o yaml \
    --from-file=user="$work/user" --from-file=password="$work/password" --from-file=users.conf="$work/users.conf" \
    >"$work/secret.yaml"
  k apply --server-side --force-conflicts --field-manager=nats-auth.sh -f "$work/secret.yaml" >/dev/null
  # A client-side apply (this script's first version, or by hand) left the
  # data in this annotation.
  k annotate secret nats-auth kubectl.kubernetes.io/last-applied-configuration- >/dev/null 2>&1 || true
}

# key KEY: a key of the Secret, decoded; KEY as jsonpath wants it (a dot
# escaped: 'users\.conf').
key() {
  local b64
  b64=$(k get secret nats-auth -o "jsonpath={.data.$1}") || return 1
  printf '%s' "$b64" | base64 -d
}

# nats_pods: the NATS pods' names, one per line; fails if there are none.
nats_pods() {
  local pods
  pods=$(k get pods -l app.kubernetes.io/name=nats -o 'jsonpath={.items[*].metadata.name}') || return 1
  [[ -n $pods ]] || return 1
  printf '%s\n' $pods
}

# monitor POD PATH: a NATS server's monitoring endpoint, from its own
# container; fails on no answer.
monitor() {
  local out
  out=$(k exec "$1" -c nats -- wget -qO- "http://127.0.0.1:8222$2" 2>/dev/null) || return 1
  [[ -n $out ]] || return 1
  printf '%s\n' "$out"
}

# load_time POD: when the server last read its configuration; fails on no answer.
load_time() {
  local varz t
  varz=$(monitor "$1" /varz) || return 1
  t=$(printf '%s\n' "$varz" | sed -n 's/.*"config_load_time": *"\([^"]*\)".*/\1/p')
  [[ -n $t ]] || return 1
  echo "$t"
}

# until_all WHAT CHECK: waits until CHECK POD succeeds for every NATS pod.
until_all() {
  local what=$1 check=$2 deadline=$((SECONDS + WAIT)) pod left
  while :; do
    left=
    if pods=$(nats_pods); then
      for pod in $pods; do
        "$check" "$pod" || left="$left $pod"
      done
    else
      left=" (no NATS pod found)"
    fi
    [[ -z $left ]] && return 0
    ((SECONDS < deadline)) || die "after ${WAIT}s, not yet $what:$left (nothing is lost: every user listed still works; run rotate again)"
    sleep 5
  done
}

# The load times before a change, as POD=TIME lines in a file.
remember_load_times() {
  local pods pod t
  : >"$work/loaded"
  pods=$(nats_pods) || die "no NATS pod found"
  for pod in $pods; do
    t=$(load_time "$pod") || die "no answer from $pod's monitoring port"
    echo "$pod=$t" >>"$work/loaded"
  done
}

# reloaded POD: POD's users.conf is the one last applied and the server
# read its configuration again since (its reloader does so on every change
# of the file, so the read that follows the file's change includes it).
reloaded() {
  local mounted t before
  mounted=$(k exec "$1" -c nats -- cat /etc/nats-auth/users.conf 2>/dev/null) || return 1
  [[ $mounted == "$(cat "$work/users.conf")" ]] || return 1
  t=$(load_time "$1") || return 1
  before=$(grep "^$1=" "$work/loaded" | cut -d= -f2-) || true
  [[ $t != "$before" ]]
}

# only_user POD: POD answers, and none of its clients is connected as
# another user than $user.
only_user() {
  local connz
  connz=$(monitor "$1" '/connz?auth=true&limit=100000') || return 1
  ! printf '%s\n' "$connz" | grep '"authorized_user"' | grep -v "\"authorized_user\": *\"$user\"" >/dev/null
}

user=
case ${1:-} in
create)
  exists=$(k get secret nats-auth --ignore-not-found -o name) || die "reading the Secret $NAMESPACE/nats-auth failed"
  if [[ -n $exists ]]; then
    conf=$(key 'users\.conf') || die "reading the Secret $NAMESPACE/nats-auth failed"
    if [[ -n $conf ]]; then
      say "the Secret $NAMESPACE/nats-auth exists: kept"
      exit 0
    fi
    # Made before NATS read its users from the Secret (a password alone,
    # of the user terminal-apiserver): the same credentials, now complete.
    password=$(key password) || die "reading the Secret $NAMESPACE/nats-auth failed"
    [[ -n $password ]] || die "the Secret $NAMESPACE/nats-auth has no password: delete it, or fix it by hand"
    apply terminal-apiserver "$password" "$(users_conf "$(entry terminal-apiserver "$password")")"
    say "added the keys user and users.conf to the Secret $NAMESPACE/nats-auth (the same password)"
    exit 0
  fi
  user=$(new_user)
  password=$(new_password)
  apply "$user" "$password" "$(users_conf "$(entry "$user" "$password")")"
  say "created the Secret $NAMESPACE/nats-auth (user $user)"
  ;;
rotate)
  old_user=$(key user) || die "reading the Secret $NAMESPACE/nats-auth failed (nats-auth.sh create makes it)"
  old_password=$(key password) || die "reading the Secret $NAMESPACE/nats-auth failed"
  conf=$(key 'users\.conf') || die "reading the Secret $NAMESPACE/nats-auth failed"
  [[ -n $old_user && -n $old_password ]] || die "the Secret $NAMESPACE/nats-auth has no user and password (nats-auth.sh create)"
  user=$(new_user)
  password=$(new_password)
  [[ $user != "$old_user" ]] || die "a rotation ran less than a second ago"
  # Every user NATS takes now (more than one if a rotation stopped midway),
  # and the new one.
  taken=$(printf '%s\n' "$conf" | grep '^ *{user:') || taken=$(entry "$old_user" "$old_password")
  all=$(users_conf "$taken" "$(entry "$user" "$password")")

  say "1/3: NATS takes $user as well"
  remember_load_times
  apply "$old_user" "$old_password" "$all"
  until_all "reloaded with $user" reloaded

  say "2/3: the replicas move to $user"
  apply "$user" "$password" "$all"
  until_all "connected as $user only" only_user

  say "3/3: NATS forgets the other users"
  remember_load_times
  apply "$user" "$password" "$(users_conf "$(entry "$user" "$password")")"
  until_all "reloaded with $user alone" reloaded
  say "rotated: terminal-apiserver connects as $user"
  ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
