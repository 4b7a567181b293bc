#!/usr/bin/env bash
# Run one ClickHouse server in the foreground with its data, logs and ports of its own:
#   [CLICKHOUSE_USER=name:password] tests/services/clickhouse-instance.sh DIR HTTP_PORT TCP_PORT INTERSERVER_PORT
# start.sh runs the shared server with it (8123, 9000, 9009); tests that stop and restart a
# server (tests/kafka.rs, the ClickHouse outage) run a private one on free ports.
set -euo pipefail
d=$1 http=$2 tcp=$3 inter=$4
mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/format_schemas" "$d/log"
sed -e "s#/var/lib/clickhouse/tmp/#$d/tmp/#; s#/var/lib/clickhouse/user_files/#$d/user_files/#" \
    -e "s#/var/lib/clickhouse/format_schemas/#$d/format_schemas/#; s#<path>/var/lib/clickhouse/</path>#<path>$d/data/</path>#" \
    -e "s#/var/log/clickhouse-server/#$d/log/#g; s#<listen_host>::1</listen_host>##" \
    -e "s#<http_port>8123</http_port>#<http_port>$http</http_port>#; s#<tcp_port>9000</tcp_port>#<tcp_port>$tcp</tcp_port>#" \
    -e "s#<interserver_http_port>9009</interserver_http_port>#<interserver_http_port>$inter</interserver_http_port>#" \
    /etc/clickhouse-server/config.xml > "$d/config.xml"
cp /etc/clickhouse-server/users.xml "$d/users.xml"
# CLICKHOUSE_USER=name:password adds a user with that password (tests of secrets).
if [[ -n "${CLICKHOUSE_USER:-}" ]]; then
    name=${CLICKHOUSE_USER%%:*} password=${CLICKHOUSE_USER#*:}
    user="<$name><password>$password</password><networks><ip>::/0</ip></networks>"
    user+="<profile>default</profile><quota>default</quota></$name>"
    sed -i "s#</users>#$user</users>#" "$d/users.xml"
fi
exec clickhouse-server --config-file="$d/config.xml"
