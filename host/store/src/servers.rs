//! Membership: joining, heartbeats, takeover of dead servers, handover on stop.
//!
//! Liveness is judged only on the database's clock: a server is dead when its
//! `heartbeat_at` is older than the lease, whatever the servers' own clocks say.

use baton_core::Transition;
use baton_core::store::OWNED_COUNTED_UP_TO;
use sqlx::{Connection, Row};

use baton_core::store::async_trait;

use crate::{
    Connections, Db, MinuteCounts, ServerRow, ServerStatus, ServerStore, SqlStore, StoreError,
    Takeover,
};

fn server_row(row: &sqlx::any::AnyRow) -> ServerRow {
    ServerRow {
        id: row.get(0),
        name: row.get(1),
        incarnation: row.get(2),
        status: ServerStatus::parse(row.get::<String, _>(3).as_str()),
        address: row.get(4),
        started_at: row.get(5),
        heartbeat_at: row.get(6),
        heartbeat_age_ms: row.get(7),
        owned: row.get(8),
        flow_set: row.get(9),
        flows_head: row.get(10),
        renamed: row
            .get::<Option<String>, _>(11)
            .zip(row.get::<Option<i64>, _>(12)),
    }
}

impl SqlStore {
    /// Moves `from`'s requests that may move to `to` (none: to whichever
    /// live server claims them first) at a bumped epoch, each with the
    /// history event of `transition` (a takeover or a handover). A request sleeping or waiting for a retry keeps its due time;
    /// the others are due now. Set-based: one UPDATE, and the events in
    /// multi-row INSERTs, so a server that owned many requests is moved in a
    /// few round trips.
    async fn move_requests(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        transition: Transition,
        from: &str,
        to: Option<&str>,
        detail: &str,
    ) -> Result<Vec<String>, StoreError> {
        let moved: Vec<(String, i64, String)> = sqlx::query_as(&self.transition_sql(
            transition,
            "UPDATE requests SET owner = $2, epoch = epoch + 1, status = RULE_TO,
                    next_attempt_at = CASE WHEN status = 'waiting_retry' OR (status = 'running' AND next_attempt_at IS NOT NULL)
                                           THEN next_attempt_at ELSE NOW_MS END,
                    updated_at = NOW_MS
              WHERE owner = $1 AND status IN (RULE_FROM) AND other_server_retry = 1
              RETURNING id, epoch, flow",
        ))
        .bind(from)
        .bind(to)
        .fetch_all(&mut **tx)
        .await.db()?;
        if let (Transition::TakeOver, Some(taker)) = (transition, to) {
            let mut per_flow: std::collections::BTreeMap<&str, i64> = Default::default();
            for (_, _, flow) in &moved {
                *per_flow.entry(flow).or_default() += 1;
            }
            for (flow, takeovers) in per_flow {
                let counts = MinuteCounts {
                    takeovers,
                    ..Default::default()
                };
                self.add_minute(tx, flow, taker, &counts).await?;
            }
        }
        let moved: Vec<(String, i64)> = moved
            .into_iter()
            .map(|(id, epoch, _)| (id, epoch))
            .collect();
        let ids: Vec<String> = moved.iter().map(|(id, _)| id.clone()).collect();
        self.append_fences(tx, &ids).await?;
        self.event_batch(tx, &moved, transition, to.unwrap_or(from), detail)
            .await?;
        Ok(moved.into_iter().map(|(id, _)| id).collect())
    }

    /// Every server, oldest first, with `owned` as its owned-requests column.
    async fn server_rows(&self, owned: &str) -> Result<Vec<ServerRow>, StoreError> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT s.id, s.name, s.incarnation, s.status, s.address, s.started_at, s.heartbeat_at,
                    NOW_MS - s.heartbeat_at AS age, {owned} AS owned,
                    s.flow_set, s.flows_head, s.renamed_by, s.renamed_at
               FROM servers s ORDER BY s.started_at, s.id",
        )))
        .fetch_all(&self.pool)
        .await
        .db()?;
        Ok(rows.iter().map(server_row).collect())
    }

    /// The history event of `transition` for each `(request, epoch)`, in
    /// batches of multi-row INSERTs.
    async fn event_batch(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        requests: &[(String, i64)],
        transition: Transition,
        server: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        // Two parameters a row, well under every backend's bound on them.
        const BATCH: usize = 500;
        let Some(kind) = transition.rule().event else {
            return Ok(());
        };
        for batch in requests.chunks(BATCH) {
            let rows: Vec<String> = (0..batch.len())
                .map(|i| format!("(${}, NOW_MS, $1, $2, ${}, $3)", 4 + 2 * i, 5 + 2 * i))
                .collect();
            let sql = self.sql(&format!(
                "INSERT INTO request_events (request_id, at, kind, server_id, epoch, detail) VALUES {}",
                rows.join(", ")
            ));
            let mut query = sqlx::query(&sql)
                .bind(kind.as_str())
                .bind(server)
                .bind(detail);
            for (request, epoch) in batch {
                query = query.bind(request).bind(*epoch);
            }
            query.execute(&mut **tx).await.db()?;
        }
        Ok(())
    }
}

#[async_trait]
impl ServerStore for SqlStore {
    async fn close(&self) {
        // The kept writing connection stays checked out while it is kept,
        // and closing waits for every checked-out connection: give it back.
        drop(self.kept_writer.lock().await.take());
        self.writers.close();
        self.wakes.stop();
        self.pool.close().await;
        if let Some(heartbeats) = &self.heartbeat_pool {
            heartbeats.close().await;
        }
    }

    async fn listen_for_wakes(
        &self,
        me: &str,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Result<bool, StoreError> {
        self.listen(me, wake).await
    }

    fn connections(&self) -> Connections {
        Connections {
            open: self.pool.size(),
            idle: self.pool.num_idle() as u32,
        }
    }

    async fn now_ms(&self) -> Result<i64, StoreError> {
        let sql = format!("SELECT {}", self.backend.now_ms());
        let (now,): (i64,) = sqlx::query_as(&sql).fetch_one(&self.pool).await.db()?;
        Ok(now)
    }

    async fn server(&self, id: &str) -> Result<Option<ServerRow>, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT id, name, incarnation, status, address, started_at, heartbeat_at,
                    NOW_MS - heartbeat_at AS age, CAST(NULL AS BIGINT) AS owned, flow_set, flows_head, renamed_by, renamed_at
               FROM servers WHERE id = $1",
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await.db()?;
        Ok(row.as_ref().map(server_row))
    }

    async fn server_names(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, name FROM servers ORDER BY name, id")
                .fetch_all(&self.pool)
                .await
                .db()?,
        )
    }

    async fn servers(&self) -> Result<Vec<ServerRow>, StoreError> {
        self.server_rows("CAST(NULL AS BIGINT)").await
    }

    async fn servers_with_owned(&self) -> Result<Vec<ServerRow>, StoreError> {
        self.server_rows(&format!(
            "(SELECT COUNT(*) FROM (SELECT 1 FROM requests r
                WHERE r.owner = s.id AND r.status IN ('queued', 'running', 'waiting_retry')
                LIMIT {}) AS o)",
            OWNED_COUNTED_UP_TO + 1
        ))
        .await
    }

    async fn join(&self, id: &str, name: Option<&str>, address: &str) -> Result<i64, StoreError> {
        let mut writer = self.writer().await?;
        let (incarnation,): (i64,) = sqlx::query_as(&self.sql(
            "INSERT INTO servers (id, name, incarnation, status, address, started_at, heartbeat_at)
             VALUES ($1, COALESCE($2, $1), 1, 'running', $3, NOW_MS, NOW_MS)
             ON CONFLICT (id) DO UPDATE SET
                name = COALESCE($2, servers.name), incarnation = servers.incarnation + 1,
                status = 'running', address = $3, started_at = NOW_MS, heartbeat_at = NOW_MS
             RETURNING incarnation",
        ))
        .bind(id)
        .bind(name)
        .bind(address)
        .fetch_one(&mut *writer)
        .await
        .db()?;
        Ok(incarnation)
    }

    async fn heartbeat(&self, id: &str, incarnation: i64) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE servers SET heartbeat_at = NOW_MS
              WHERE id = $1 AND incarnation = $2 AND status = 'running'",
        );
        let beat = sqlx::query(&sql).bind(id).bind(incarnation);
        let done = match &self.heartbeat_pool {
            Some(pool) => beat.execute(pool).await,
            None => beat.execute(&mut *self.writer().await?).await,
        }
        .db()?;
        Ok(done.rows_affected() == 1)
    }

    async fn rename_server(&self, id: &str, name: &str, actor: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(&self.sql(
            "UPDATE servers SET name = $2, renamed_by = $3, renamed_at = NOW_MS WHERE id = $1",
        ))
        .bind(id)
        .bind(name)
        .bind(actor)
        .execute(&mut *writer)
        .await
        .db()?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("server {id}")));
        }
        Ok(())
    }

    async fn report_server(
        &self,
        id: &str,
        flow_set: &str,
        flows_head: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        sqlx::query("UPDATE servers SET flow_set = $2, flows_head = $3 WHERE id = $1")
            .bind(id)
            .bind(flow_set)
            .bind(flows_head)
            .execute(&mut *writer)
            .await
            .db()?;
        Ok(())
    }

    async fn dead_servers(&self, lease_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as(&self.sql(
                "SELECT id FROM servers WHERE status = 'running' AND heartbeat_at < NOW_MS - $1",
            ))
            .bind(lease_ms)
            .fetch_all(&self.pool)
            .await
            .db()?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn take_over(
        &self,
        dead: &str,
        me: &str,
        incarnation: i64,
        lease_ms: i64,
    ) -> Result<Option<Takeover>, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        let marked = sqlx::query(&self.sql(
            "UPDATE servers SET status = 'terminated'
              WHERE id = $1 AND status = 'running' AND heartbeat_at < NOW_MS - $2",
        ))
        .bind(dead)
        .bind(lease_ms)
        .execute(&mut *tx)
        .await
        .db()?;
        if marked.rows_affected() == 0 {
            return Ok(None);
        }
        let alive = sqlx::query(&self.sql(
            "UPDATE servers SET heartbeat_at = NOW_MS
              WHERE id = $1 AND incarnation = $2 AND status = 'running'",
        ))
        .bind(me)
        .bind(incarnation)
        .execute(&mut *tx)
        .await
        .db()?;
        if alive.rows_affected() == 0 {
            return Err(StoreError::Refused(format!(
                "server {me} is no longer running and cannot take over {dead}"
            )));
        }
        let moved = self
            .move_requests(
                &mut tx,
                Transition::TakeOver,
                dead,
                Some(me),
                &format!("from dead server {dead}"),
            )
            .await?;
        let stranded: Vec<(String, i64)> = sqlx::query_as(&self.transition_sql(
            Transition::Strand,
            "UPDATE requests SET epoch = epoch + 1, status = RULE_TO,
                    next_attempt_at = CASE WHEN status = 'waiting_retry' OR (status = 'running' AND next_attempt_at IS NOT NULL)
                                           THEN next_attempt_at ELSE NOW_MS END,
                    updated_at = NOW_MS
              WHERE owner = $1 AND status IN (RULE_FROM) AND other_server_retry = 0
              RETURNING id, epoch",
        ))
        .bind(dead)
        .fetch_all(&mut *tx)
        .await.db()?;
        let ids: Vec<String> = stranded.iter().map(|(id, _)| id.clone()).collect();
        self.append_fences(&mut tx, &ids).await?;
        let detail = format!(
            "server {dead} is down and the flow must stay on it: it waits for that server or an operator"
        );
        self.event_batch(&mut tx, &stranded, Transition::Strand, dead, &detail)
            .await?;
        tx.commit().await.db()?;
        Ok(Some(Takeover {
            dead: dead.to_owned(),
            requests: moved,
            stranded: stranded.into_iter().map(|(id, _)| id).collect(),
        }))
    }

    async fn stop_server(&self, id: &str, incarnation: i64) -> Result<Vec<String>, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        sqlx::query("UPDATE servers SET status = 'stopped' WHERE id = $1 AND incarnation = $2")
            .bind(id)
            .bind(incarnation)
            .execute(&mut *tx)
            .await
            .db()?;
        let released = self
            .move_requests(&mut tx, Transition::HandOver, id, None, "server stopped")
            .await?;
        if !released.is_empty() {
            self.wake_every_server(&mut tx).await?;
        }
        tx.commit().await.db()?;
        Ok(released)
    }

    async fn cluster_lease(&self, proposed_ms: i64) -> Result<i64, StoreError> {
        let mut writer = self.writer().await?;
        sqlx::query(
            "INSERT INTO cluster_settings (name, value) VALUES ('lease_ms', $1)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(proposed_ms)
        .execute(&mut *writer)
        .await
        .db()?;
        let (lease,): (i64,) =
            sqlx::query_as("SELECT value FROM cluster_settings WHERE name = 'lease_ms'")
                .fetch_one(&mut *writer)
                .await
                .db()?;
        Ok(lease)
    }

    async fn recover_own(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut writer = self.writer().await?;
        let rows: Vec<(String,)> = sqlx::query_as(&self.transition_sql(
            Transition::Recover,
            "UPDATE requests SET status = RULE_TO, next_attempt_at = NOW_MS, updated_at = NOW_MS
              WHERE owner = $1 AND status IN (RULE_FROM) AND next_attempt_at IS NULL RETURNING id",
        ))
        .bind(id)
        .fetch_all(&mut *writer)
        .await
        .db()?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
