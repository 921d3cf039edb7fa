#!/usr/bin/env bash
# A local Apache Kafka (KRaft, one node: broker and controller in one JVM) for Interlink's tests,
# the demo and the benchmark. Installed from Maven Central's artifacts with Maven, run with the
# machine's Java on loopback only: a TEST broker, never one to hold real data.
#
#   bash scripts/kafka.sh install start     # what CI runs; every step is idempotent
#   bash scripts/kafka.sh stop | status | kill | bootstrap
#
# install   resolves org.apache.kafka:kafka_2.13 (KAFKA_VERSION, default 4.4.0; 4.1.1 also works)
#           and a log4j2 binding for its slf4j (without one the broker logs nothing) into
#           $INTERLINK_KAFKA_HOME (default ~/.cache/interlink/kafka/<version>/libs).
# start     formats the KRaft storage once (a fixed cluster id) and starts the node, waiting until
#           it accepts clients (its log says "Kafka Server started" and the port answers).
# stop      SIGTERM, then waits; kill: SIGKILL (a crash, for the tests that restart the broker).
# status    exit 0 when the port answers. bootstrap: prints the client address.
#
# Ports 19092 (clients) and 19093 (controller) keep clear of a Kafka on 9092. Without systemd.
set -euo pipefail

VERSION="${KAFKA_VERSION:-4.4.0}"
FALLBACK_VERSION=4.1.1
PORT="${INTERLINK_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${INTERLINK_KAFKA_CONTROLLER_PORT:-19093}"
HOME_DIR="${INTERLINK_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/interlink/kafka}"
RUN_DIR="${INTERLINK_KAFKA_DATA:-/tmp/interlink-kafka-$PORT}"
# Pinned: Debian's Maven 3.8.7 defaults to a 2.x plugin whose copy-dependencies lacks options.
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
LOG4J_VERSION=2.25.3
CLUSTER_ID=aW50ZXJsaW5rLWthZmthMQ # base64 of 16 bytes, the KRaft format; fixed: one test node

say() { echo "kafka.sh: $*"; }
die() {
  echo "kafka.sh: $*" >&2
  exit 1
}

libs_dir() { echo "$HOME_DIR/$1/libs"; }
installed_version() {
  local v
  for v in "$VERSION" "$FALLBACK_VERSION"; do
    if [ -f "$(libs_dir "$v")/.complete" ]; then
      echo "$v"
      return 0
    fi
  done
  return 1
}

need_tools() {
  command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 && return
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Java 17 and Maven (Debian packages)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null 2>&1 || {
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
  }
}

resolve() {
  # A throwaway pom whose dependencies are Kafka and the log binding; copy-dependencies puts
  # the whole transitive closure's jars in one directory: the broker's classpath.
  local v="$1" out work
  out="$(libs_dir "$v")"
  work="$(mktemp -d)"
  cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>interlink</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencyManagement><dependencies>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-bom</artifactId>
      <version>$LOG4J_VERSION</version><type>pom</type><scope>import</scope></dependency>
  </dependencies></dependencyManagement>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId></dependency>
  </dependencies>
</project>
POM
  rm -rf "$out"
  mkdir -p "$out"
  if mvn -q -B -f "$work/pom.xml" "$DEPENDENCY_PLUGIN:copy-dependencies" \
    -DoutputDirectory="$out" -DincludeScope=runtime >"$work/mvn.log" 2>&1; then
    touch "$out/.complete"
    rm -rf "$work"
    return 0
  fi
  tail -n 20 "$work/mvn.log" >&2
  rm -rf "$work" "$out"
  return 1
}

cmd_install() {
  installed_version >/dev/null && return 0
  need_tools
  say "resolving kafka_2.13 $VERSION from Maven Central (10-30 s)"
  resolve "$VERSION" && return 0
  say "kafka_2.13 $VERSION did not resolve; trying $FALLBACK_VERSION"
  resolve "$FALLBACK_VERSION" || die "could not resolve Kafka with Maven"
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
pid() { cat "$RUN_DIR/kafka.pid" 2>/dev/null; }
running() {
  local p
  p="$(pid)" && [ -n "$p" ] && kill -0 "$p" 2>/dev/null
}

write_config() {
  mkdir -p "$RUN_DIR/data"
  cat >"$RUN_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$RUN_DIR/data
num.partitions=4
auto.create.topics.enable=false
# One node: the internal topics cannot have more replicas than that.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
# After a SIGKILL the controller refuses the restarted broker until the old session expires.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
PROPS
  cat >"$RUN_DIR/log4j2.properties" <<LOG
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=$RUN_DIR/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=org.apache.kafka
logger.kafka.level=WARN
logger.raft.name=kafka
logger.raft.level=INFO
LOG
}

java_cmd() {
  local v
  v="$(installed_version)" || die "Kafka is not installed (run: bash scripts/kafka.sh install)"
  # C1 only: on two cores the broker starts about twice as fast as with the default JIT.
  JAVA=(java -Xmx512m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
    "-Dlog4j2.configurationFile=$RUN_DIR/log4j2.properties" -cp "$(libs_dir "$v")/*")
}

cmd_start() {
  if running && answers; then
    return 0
  fi
  write_config
  java_cmd
  "${JAVA[@]}" kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$RUN_DIR/server.properties" \
    --ignore-formatted >"$RUN_DIR/format.log" 2>&1 || {
    cat "$RUN_DIR/format.log" >&2
    die "formatting the storage failed"
  }
  : >"$RUN_DIR/server.log"
  # setsid: the broker outlives this script and the shell that ran it.
  setsid "${JAVA[@]}" kafka.Kafka "$RUN_DIR/server.properties" >"$RUN_DIR/stdout.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/kafka.pid"
  for _ in $(seq 1 600); do
    if grep -q "Kafka Server started" "$RUN_DIR/server.log" 2>/dev/null && answers; then
      return 0
    fi
    running || break
    sleep 0.1
  done
  tail -n 30 "$RUN_DIR/server.log" "$RUN_DIR/stdout.log" >&2 || true
  die "the broker on 127.0.0.1:$PORT did not start within 60 s"
}

cmd_stop() {
  local signal="$1" p
  p="$(pid)" || return 0
  [ -n "$p" ] || return 0
  kill "-$signal" "$p" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$p" 2>/dev/null || {
      rm -f "$RUN_DIR/kafka.pid"
      return 0
    }
    sleep 0.1
  done
  die "the broker (pid $p) did not stop within 30 s"
}

[ $# -gt 0 ] || set -- start
for cmd in "$@"; do
  case "$cmd" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop TERM ;;
    kill) cmd_stop KILL ;;
    status) running && answers ;;
    bootstrap) echo "127.0.0.1:$PORT" ;;
    *) die "usage: $0 install|start|stop|kill|status|bootstrap" ;;
  esac
done
