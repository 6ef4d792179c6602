//! `baton up`: one server process, from data folder to HTTP listener.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use baton_runtime::{Runtime, RuntimeConfig};
use baton_store::Store;
use tokio::sync::Notify;

use crate::api::{self, AppState};
use crate::checkpoint::Abort;
use crate::cluster::{Cluster, DataFolder, Timing};
use crate::config::ServerConfig;
use crate::deploy;
use crate::executor::Executor;
use crate::metrics::Metrics;

/// Runs a server until SIGTERM or Ctrl-C, then stops it cleanly.
pub async fn up(config: ServerConfig, deploy_paths: Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    let folder = DataFolder::open(&config.data)?;
    let store = Store::connect(&config.database, &config.storage)
        .await
        .with_context(|| {
            format!(
                "opening the checkpoint store {}",
                config.database_redacted()
            )
        })?;
    crate::auth::bootstrap(&store, &config.data).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?.to_string();
    let metrics = Arc::new(Metrics::default());
    let timing = Timing {
        heartbeat: config.heartbeat,
        lease: config.lease,
    };
    let cluster = Arc::new(
        Cluster::join(
            store.clone(),
            folder.server_id.clone(),
            config.name.clone(),
            address.clone(),
            timing,
            metrics.clone(),
            &config.data,
        )
        .await?,
    );
    let recovered = store.recover_own(&cluster.id).await?;
    if !recovered.is_empty() {
        tracing::info!(
            count = recovered.len(),
            "recovering this server's interrupted requests"
        );
    }
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: config.data.join("compiled"),
        memory_limit: config.memory_limit,
        time_limit: config.time_limit,
        max_instances: (config.capacity + 8) as u32,
    })?;
    let executor = Executor::new(
        store.clone(),
        runtime,
        cluster.clone(),
        metrics.clone(),
        config.capacity,
        config.connections.clone(),
    );
    let stop = Arc::new(Notify::new());
    let scheduler = tokio::spawn(executor.clone().schedule(stop.clone()));
    let membership = tokio::spawn(heartbeat(cluster.clone(), executor.clone(), store.clone()));
    let schedules = tokio::spawn(crate::schedule::run(
        store.clone(),
        cluster.id.clone(),
        executor.clone(),
    ));

    for path in deploy_paths {
        for (file, bytes) in deploy::component_bytes(&path).await? {
            let deployed = deploy::deploy(&store, executor.runtime(), bytes, &config.connections)
                .await
                .with_context(|| format!("deploying {}", file.display()))?;
            println!("{} {}", deployed.name, deployed.version);
        }
    }

    let state = AppState {
        store: store.clone(),
        executor: executor.clone(),
        cluster: cluster.clone(),
        metrics,
        config: Arc::new(config),
    };
    let app = api::router(state);
    // Tests and scripts read this line to find a server started on port 0.
    println!("baton: listening on http://{address}");
    tracing::info!(server = %cluster.id, %address, "serving the console and API");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;

    tracing::info!("stopping: no new work, handing requests over");
    stop.notify_one();
    membership.abort();
    schedules.abort();
    let _ = scheduler.await;
    executor.interrupt_all(&Abort::Stopping);
    executor.drain(Duration::from_secs(5)).await;
    let handed = cluster.stop().await?;
    tracing::info!(handed_over = handed.len(), "stopped");
    store.close().await;
    Ok(())
}

/// The membership loop: heartbeat, takeover, and local fencing.
pub(crate) async fn heartbeat(cluster: Arc<Cluster>, executor: Arc<Executor>, store: Store) {
    let mut interval = tokio::time::interval(cluster.timing().heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match cluster.tick().await {
            Ok(report) => {
                if !report.adopted.is_empty() || report.rejoined {
                    executor.wake();
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        // Cancels and re-executes from other servers move epochs on; stop
        // the local attempts they fenced without waiting for their next commit.
        let checked = executor.active();
        if !checked.is_empty()
            && let Ok(running) = store.running_on(&cluster.id).await
        {
            executor.fence_lost(&checked, &running);
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
