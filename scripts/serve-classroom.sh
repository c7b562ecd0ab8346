#!/usr/bin/env bash
# Serve the hosted app to a large class: K app processes behind Debian's nginx, one link for everybody.
#
#   bash scripts/serve-classroom.sh K [--port 8501] [--host 127.0.0.1]
#
# Starts K `streamlit run app.py` processes with ARCFACE_VIZ_HOSTED=1 on ports PORT+1 … PORT+K (localhost
# only) and nginx on HOST:PORT in front of them; Ctrl-C (or SIGTERM) stops them all.  Students open
# http://<this machine>:PORT/toy_training?… as usual.
#
# Why and when: one app process runs Python on one core (its visitors share the interpreter lock), so a
# machine with more cores holds more visitors with more processes, about one per core (README.md, "A whole
# classroom on one link").  Each visitor must stay on the process that holds their session, websocket and
# images: nginx picks a process by hashing a cookie it sets on the first request ("sticky sessions").  Not by
# the visitor's IP address: a school's students often share one public address, and ip_hash would send the
# whole class to one process.
#
# Needs nginx (`apt-get install -y nginx`; the system service need not run: this starts its own nginx with a
# configuration and pid file in a temporary folder).  Each process needs its own memory (about 0.5 GB hosted).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
    echo "serve-classroom: ERROR: $*" >&2
    exit 1
}

[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -ge 1 ]] || die "usage: bash scripts/serve-classroom.sh K [--port 8501] [--host 127.0.0.1]"
K=$1
shift
PORT=8501
HOST=127.0.0.1
while [[ $# -gt 0 ]]; do
    case $1 in
    --port) PORT=${2:?--port needs a number}; shift 2 ;;
    --host) HOST=${2:?--host needs an address (0.0.0.0: every network interface)}; shift 2 ;;
    *) die "unknown argument $1" ;;
    esac
done
[[ $PORT =~ ^[0-9]+$ ]] || die "--port must be a number, got $PORT"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)  # /usr/sbin is not on every user's PATH
[[ -x $NGINX ]] || die "nginx not found: install it with 'apt-get install -y nginx'"
PYTHON=${PYTHON:-python}

RUN=$(mktemp -d "${TMPDIR:-/tmp}/serve-classroom.XXXXXX")
mkdir -p "$RUN/tmp"
pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

servers=""
for i in $(seq 1 "$K"); do
    p=$((PORT + i))
    ARCFACE_VIZ_HOSTED=1 "$PYTHON" -m streamlit run app.py --server.port "$p" --server.address 127.0.0.1 \
        --server.headless true >"$RUN/app-$i.log" 2>&1 &
    pids+=($!)
    servers+="        server 127.0.0.1:$p max_fails=0;"$'\n'
done

cat >"$RUN/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $RUN/tmp/body;
    proxy_temp_path $RUN/tmp/proxy;
    fastcgi_temp_path $RUN/tmp/fastcgi;
    uwsgi_temp_path $RUN/tmp/uwsgi;
    scgi_temp_path $RUN/tmp/scgi;
    # A visitor's process: the one their cookie hashes to; a first request (no cookie yet) gets a random
    # one, and the cookie that makes it stick.
    map \$cookie_arcface_viz_backend \$sticky {
        "" \$request_id;
        default \$cookie_arcface_viz_backend;
    }
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        "" close;
    }
    upstream app {
        hash \$sticky consistent;
$servers    }
    server {
        listen $HOST:$PORT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;       # Streamlit's websocket
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$host;
            proxy_read_timeout 1d;
            proxy_buffering off;
            add_header Set-Cookie "arcface_viz_backend=\$sticky; Path=/; SameSite=Lax" always;
        }
    }
}
EOF

# wait until every process answers its health check before letting visitors in
for i in $(seq 1 "$K"); do
    p=$((PORT + i))
    for _ in $(seq 1 240); do
        "$PYTHON" - "$p" <<'EOF' && break
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_stcore/health", timeout=2)
except OSError:
    sys.exit(1)
EOF
        kill -0 "${pids[$((i - 1))]}" 2>/dev/null || die "app process $i exited; its log: $(tail -20 "$RUN/app-$i.log")"
        sleep 0.5
    done
done
"$NGINX" -t -c "$RUN/nginx.conf" -p "$RUN" >/dev/null 2>&1 || die "nginx rejects its configuration: $("$NGINX" -t -c "$RUN/nginx.conf" -p "$RUN" 2>&1)"
echo "serve-classroom: $K app process(es) behind nginx at http://$HOST:$PORT (logs in $RUN); Ctrl-C stops them"
"$NGINX" -c "$RUN/nginx.conf" -p "$RUN" &
pids+=($!)
wait -n "${pids[@]}" || true
echo "serve-classroom: a process exited; stopping the others" >&2
