#!/usr/bin/env bash
# The balancer's start (docker-compose.yml's `balancer`): HTTPS at the balancer exactly when the API
# serves HTTPS, by the API's own rule (ENABLE_HTTPS true/false, or unset/auto: on when both files are
# there; codeapi/config/groups.py, SslSettings), from the same files; then HAProxy in the foreground
# with docker/haproxy.cfg. `codeapi-balancer stats` prints HAProxy's per-replica states and counts (CSV).
set -euo pipefail

if [[ ${1:-} == stats ]]; then
  exec 3<>/dev/tcp/127.0.0.1/8405
  echo "show stat" >&3
  exec cat <&3
fi

cert=${SSL_CERT_FILE:-/app/ssl/fullchain.pem}
key=${SSL_KEY_FILE:-/app/ssl/privkey.pem}
setting=$(tr '[:upper:]' '[:lower:]' <<<"${ENABLE_HTTPS:-}" | tr -d '[:space:]')
case "$setting" in
  "" | auto) https=$([[ -f $cert && -f $key ]] && echo 1 || echo 0) ;;
  1 | on | t | true | y | yes) https=1 ;;
  0 | off | f | false | n | no) https=0 ;;
  *) echo "codeapi-balancer: ENABLE_HTTPS=$ENABLE_HTTPS is none of true, false, auto" >&2; exit 2 ;;
esac

mkdir -p /run/haproxy
if ((https)); then
  if [[ ! -f $cert || ! -f $key ]]; then
    echo "codeapi-balancer: ENABLE_HTTPS=true but SSL_CERT_FILE ($cert) or SSL_KEY_FILE ($key) does not exist" >&2
    exit 2
  fi
  # HAProxy takes the certificate chain and its key from one file.
  (umask 077 && { cat "$cert"; echo; cat "$key"; } >/run/haproxy/site.pem)
  export CODEAPI_TLS=1
  echo "codeapi-balancer: HTTPS with $cert"
else
  unset CODEAPI_TLS
  echo "codeapi-balancer: HTTP"
fi
exec haproxy -db -f /etc/haproxy/codeapi.cfg
