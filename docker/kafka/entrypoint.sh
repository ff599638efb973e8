#!/bin/bash
# KAFKA_* variables -> /opt/kafka/config/server.properties, format the log directory once (a fixed cluster id unless
# CLUSTER_ID is set), then run the broker in the foreground. KAFKA_HEAP_OPTS and KAFKA_OPTS go to the JVM.
set -euo pipefail
props=/opt/kafka/config/server.properties
: "${KAFKA_NODE_ID:=1}"
: "${KAFKA_PROCESS_ROLES:=broker,controller}"
: "${KAFKA_CONTROLLER_QUORUM_VOTERS:=1@localhost:9093}"
: "${KAFKA_LISTENERS:=PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093}"
: "${KAFKA_ADVERTISED_LISTENERS:=PLAINTEXT://localhost:9092}"
: "${KAFKA_LISTENER_SECURITY_PROTOCOL_MAP:=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT}"
: "${KAFKA_CONTROLLER_LISTENER_NAMES:=CONTROLLER}"
: "${KAFKA_INTER_BROKER_LISTENER_NAME:=PLAINTEXT}"
: "${KAFKA_LOG_DIRS:=/var/lib/kafka/data}"
: "${KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR:=1}"
: "${KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR:=1}"
: "${KAFKA_TRANSACTION_STATE_LOG_MIN_ISR:=1}"
export KAFKA_NODE_ID KAFKA_PROCESS_ROLES KAFKA_CONTROLLER_QUORUM_VOTERS KAFKA_LISTENERS KAFKA_ADVERTISED_LISTENERS \
  KAFKA_LISTENER_SECURITY_PROTOCOL_MAP KAFKA_CONTROLLER_LISTENER_NAMES KAFKA_INTER_BROKER_LISTENER_NAME KAFKA_LOG_DIRS \
  KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR KAFKA_TRANSACTION_STATE_LOG_MIN_ISR
: > "$props"
while IFS='=' read -r name value; do
  case "$name" in KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_*_OPTS) continue ;; esac
  key=${name#KAFKA_}
  key=${key,,}; key=${key//___/-}; key=${key//__/@}; key=${key//_/.}; key=${key//@/_}
  printf '%s=%s\n' "$key" "$value" >> "$props"
done < <(env | grep '^KAFKA_' | sort)
cp=/opt/kafka/libs/*
java -Xmx256m -cp "$cp" -Dlog4j.configuration=file:/opt/kafka/config/tools-log4j.properties kafka.tools.StorageTool \
  format -t "${CLUSTER_ID:-dG9sbGdhdGUtbG9jYWwtMQ}" -c "$props" --ignore-formatted > /dev/null
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true ${KAFKA_OPTS:-} \
  -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties -cp "$cp" kafka.Kafka "$props"
