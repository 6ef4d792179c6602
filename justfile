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

# The recipes that talk to servers run `baton` from BATON_BIN (e.g. an
# installed /usr/local/bin/baton) or else this checkout's release build, and
# read the admin token of the server they talk to from the data folder this
# justfile gave it: `just run`'s ./baton-data (or BATON_DATA), and
# ./cluster/s<i> for `just cluster`'s server i on port 8080+i.
_baton_for_server := '''
baton="${BATON_BIN:-}"
if [ -z "$baton" ]; then
    cargo build --release --manifest-path "$justfile_dir/Cargo.toml" >&2
    baton="${CARGO_TARGET_DIR:-$justfile_dir/target}/release/baton"
fi
port="${server%/}"; port="${port##*:}"
if [ -z "${BATON_DATA:-}" ] && [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -gt 8080 ] \
    && [ -e "cluster/s$((port - 8080))/admin.token" ]; then
    export BATON_DATA="cluster/s$((port - 8080))"
fi
'''

# Build a flow crate (default: every example flow), or take a .wasm file, and deploy it to a running server.
deploy flow="flows" server="http://127.0.0.1:8080":
    #!/usr/bin/env bash
    set -euo pipefail
    justfile_dir={{quote(justfile_directory())}} server={{quote(server)}}
    {{_baton_for_server}}
    "$baton" deploy {{quote(flow)}} --server "$server"

# Start N servers on PostgreSQL (database created if missing) sharing ./cluster/store, consoles on 8081, 8082, …; the first deploys `deploy` ("" for none); `flags` go to every `baton up`.
cluster n="3" database="postgres://postgres@127.0.0.1:5432/baton" deploy="flows" *flags:
    #!/usr/bin/env bash
    set -euo pipefail
    justfile_dir={{quote(justfile_directory())}} server=""
    {{_baton_for_server}}
    trap 'kill $(jobs -p) 2>/dev/null' EXIT
    for i in $(seq 1 {{n}}); do
        deploy=(); [ "$i" = 1 ] && [ -n {{quote(deploy)}} ] && deploy=(--deploy {{quote(deploy)}})
        "$baton" up --data cluster/s$i --listen 127.0.0.1:$((8080 + i)) \
            --database {{quote(database)}} --storage cluster/store --name s$i "${deploy[@]}" {{flags}} &
    done
    wait

# Benchmarks: requests with checkpoints beside raw commits (pass e.g. --database postgres://…).
bench *args:
    cargo run --release -- bench {{args}}

# Update a server's flows repository (fetch, fast-forward) and deploy the flows that changed.
sync server="http://127.0.0.1:8080":
    #!/usr/bin/env bash
    set -euo pipefail
    justfile_dir={{quote(justfile_directory())}} server={{quote(server)}}
    {{_baton_for_server}}
    "$baton" sync --server "$server"

# Commit the flow changes in the flows repository (default: ./flows) for authors.
commit-flows message repo="flows":
    git -C {{repo}} add -A . && git -C {{repo}} commit -m "{{message}}"

# Install the server (as root): the binary in PREFIX/bin, the commented config in /etc/baton (kept if there), the systemd unit, and a `baton` user.
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
