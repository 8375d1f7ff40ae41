# shellcheck shell=sh
# nginx as a plain process (no systemd, no init script): start, reload or report on it
# through its pid file. Run by the role as: sh -c "$(this file)" nginx-control ACTION PIDFILE NGINX ARGS...
# ACTION: status (prints "running PID" or "stopped"), start (starts it unless running),
# reload (SIGHUP, or start when it is not running). Start and reload wait until the
# configuration is in effect (the pid file is written; new workers replaced the old ones)
# and fail with the error log's last lines when nginx does not get there.
action=$1 pidfile=$2
shift 2
errorlog=
prev=
for arg in "$@"; do
    [ "$prev" = "-e" ] && errorlog=$arg
    prev=$arg
done

master() {
    pid=$(cat "$pidfile" 2>/dev/null) || pid=
    case "$pid" in ''|*[!0-9]*) return 1 ;; esac
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'nginx: master' || return 1
    echo "$pid"
}

workers() {
    cat "/proc/$1/task/$1/children" 2>/dev/null
}

give_up() {
    echo "$1" >&2
    if [ -n "$errorlog" ] && [ -r "$errorlog" ]; then
        echo "last lines of $errorlog:" >&2
        tail -n 5 "$errorlog" >&2
    fi
    exit 1
}

start() {
    "$@" || exit 1
    i=0
    until pid=$(master); do
        i=$((i + 1))
        [ "$i" -gt 200 ] && give_up "nginx did not write its pid file $pidfile within 10 s"
        sleep 0.05
    done
    echo "started $pid"
}

case "$action" in
status)
    if pid=$(master); then echo "running $pid"; else echo "stopped"; fi
    ;;
start)
    if pid=$(master); then echo "running $pid"; else start "$@"; fi
    ;;
reload)
    if ! pid=$(master); then start "$@"; exit 0; fi
    old=" $(workers "$pid" | tr '\n' ' ') "
    kill -HUP "$pid" || exit 1
    [ -r "/proc/$pid/task/$pid/children" ] || { echo "reloaded $pid"; exit 0; }
    i=0
    while :; do
        for w in $(workers "$pid"); do
            case "$old" in *" $w "*) ;; *) echo "reloaded $pid"; exit 0 ;; esac
        done
        i=$((i + 1))
        [ "$i" -gt 200 ] && give_up "nginx (pid $pid) did not apply the new configuration within 10 s"
        sleep 0.05
    done
    ;;
*)
    echo "unknown action $action" >&2; exit 2
    ;;
esac
