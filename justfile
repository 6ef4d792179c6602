# Baton's task manual: `just --list` explains each recipe.

# Show the recipes.
default:
    @just --list

# Build the example flows and the host; start one server on SQLite at 127.0.0.1:8080.
run:
    cargo run --release -- up --deploy flows

# Run the whole test suite (PostgreSQL on 127.0.0.1:5432 for the cluster tests).
test:
    cargo test --workspace

# Build a flow crate (default: every example flow) and deploy it to a running server.
deploy flow="flows" server="http://127.0.0.1:8080":
    cargo run --release -- deploy {{flow}} --server {{server}}

# Start N servers on PostgreSQL (database created if missing) sharing ./cluster/store; consoles on 8081, 8082, …
cluster n="3" database="postgres://postgres@127.0.0.1:5432/baton":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release
    trap 'kill $(jobs -p) 2>/dev/null' EXIT
    for i in $(seq 1 {{n}}); do
        deploy=(); [ "$i" = 1 ] && deploy=(--deploy flows)
        target/release/baton up --data cluster/s$i --listen 127.0.0.1:$((8080 + i)) \
            --database {{database}} --storage cluster/store --name s$i "${deploy[@]}" &
    done
    wait

# Benchmarks: requests with checkpoints beside raw commits (pass e.g. --database postgres://…).
bench *args:
    cargo run --release -- bench {{args}}

# Update a server's flows repository (fetch, fast-forward) and deploy the flows that changed.
sync server="http://127.0.0.1:8080":
    cargo run --release -- sync --server {{server}}

# Commit the flow changes in the flows repository (default: ./flows) for authors.
commit-flows message repo="flows":
    git -C {{repo}} add -A . && git -C {{repo}} commit -m "{{message}}"

# Install the server (as root): the binary in PREFIX/bin, the commented
# config in /etc/baton (kept if there), the systemd unit, and a `baton` user.
install prefix="/usr/local":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release
    install -Dm755 target/release/baton {{prefix}}/bin/baton
    [ -e /etc/baton/baton.toml ] || install -Dm644 deploy/baton.toml /etc/baton/baton.toml
    sed "s|/usr/local/bin/baton|{{prefix}}/bin/baton|" deploy/baton.service > /etc/systemd/system/baton.service
    id -u baton >/dev/null 2>&1 || useradd --system --home-dir /var/lib/baton --shell /usr/sbin/nologin baton
    if command -v systemctl >/dev/null; then systemctl daemon-reload; fi
    echo "installed; start it with: systemctl enable --now baton"
