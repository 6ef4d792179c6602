//! Reads for people: one request, the Status List's pages, a request's
//! history.

use baton_core::EventKind;

use crate::requests::{REQUEST_COLUMNS, request_row};
use baton_core::store::async_trait;

use crate::{Db, EventRow, ListingStore, RequestFilter, RequestRow, SqlStore, StoreError};

#[async_trait]
impl ListingStore for SqlStore {
    async fn request(&self, id: &str) -> Result<Option<RequestRow>, StoreError> {
        let sql = self.sql(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1"
        ));
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        Ok(row.as_ref().map(request_row))
    }

    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError> {
        enum Arg {
            Text(String),
            Int(i64),
        }
        let mut sql = self.sql(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE 1 = 1"
        ));
        let mut args = Vec::new();
        if let Some(status) = filter.status {
            args.push(Arg::Text(status.as_str().to_owned()));
            sql.push_str(&format!(" AND status = ${}", args.len()));
        }
        if let Some(flow) = &filter.flow {
            args.push(Arg::Text(flow.clone()));
            sql.push_str(&format!(" AND flow = ${}", args.len()));
        }
        if let Some(server) = &filter.server {
            args.push(Arg::Text(server.clone()));
            sql.push_str(&format!(" AND owner = ${}", args.len()));
        }
        if let Some(prefix) = filter.id_prefix.as_deref().filter(|p| !p.is_empty()) {
            // A range on the id, which its unique index serves (LIKE is
            // case-insensitive on SQLite and would scan).
            args.push(Arg::Text(prefix.to_owned()));
            sql.push_str(&format!(" AND id >= ${}", args.len()));
            let mut end: Vec<char> = prefix.chars().collect();
            if let Some(next) = end.last().and_then(|c| char::from_u32(*c as u32 + 1)) {
                *end.last_mut().expect("non-empty") = next;
                args.push(Arg::Text(end.into_iter().collect()));
                sql.push_str(&format!(" AND id < ${}", args.len()));
            }
        }
        if let Some(held) = filter.held {
            args.push(Arg::Int(i64::from(held)));
            sql.push_str(&format!(" AND held = ${}", args.len()));
        }
        if let Some(parent) = &filter.parent {
            args.push(Arg::Text(parent.clone()));
            sql.push_str(&format!(" AND parent = ${}", args.len()));
        }
        if let Some(from) = filter.created_from {
            args.push(Arg::Int(from));
            sql.push_str(&format!(" AND created_at >= ${}", args.len()));
        }
        if let Some(before) = filter.created_before {
            args.push(Arg::Int(before));
            sql.push_str(&format!(" AND created_at < ${}", args.len()));
        }
        if let Some(after) = &filter.after {
            let row: Option<(i64,)> =
                sqlx::query_as("SELECT created_at FROM requests WHERE id = $1")
                    .bind(after)
                    .fetch_optional(&self.pool)
                    .await
                    .db()?;
            let Some((created_at,)) = row else {
                return Err(StoreError::NotFound(format!(
                    "request {after} (the page cursor)"
                )));
            };
            args.push(Arg::Int(created_at));
            args.push(Arg::Text(after.clone()));
            let (at, id) = (args.len() - 1, args.len());
            sql.push_str(&format!(
                " AND (created_at < ${at} OR (created_at = ${at} AND id < ${id}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            filter.limit.clamp(1, 1000)
        ));
        let mut query = sqlx::query(&sql);
        for arg in args {
            query = match arg {
                Arg::Text(text) => query.bind(text),
                Arg::Int(int) => query.bind(int),
            };
        }
        let rows = query.fetch_all(&self.pool).await.db()?;
        Ok(rows.iter().map(request_row).collect())
    }

    async fn last_event(&self) -> Result<i64, StoreError> {
        let (last,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) FROM request_events")
            .fetch_one(&self.pool)
            .await
            .db()?;
        Ok(last)
    }

    async fn status_values(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT key, value FROM request_status_values WHERE request_id = $1 ORDER BY key",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .db()?)
    }

    async fn events(
        &self,
        id: &str,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        /// `(id, at, kind, server, epoch, detail)` as stored.
        type Stored = (
            i64,
            i64,
            String,
            Option<String>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Stored> = sqlx::query_as(
            "SELECT id, at, kind, server_id, epoch, detail FROM request_events
                  WHERE request_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(id)
        .bind(after.unwrap_or(-1))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.into_iter()
            .map(|(number, at, kind, server, epoch, detail)| {
                let kind = EventKind::parse(&kind).ok_or_else(|| StoreError::Unreadable {
                    what: format!("event {number} of request {id}"),
                    reason: format!("unknown kind {kind:?}"),
                })?;
                Ok(EventRow {
                    id: number,
                    at,
                    kind,
                    server,
                    epoch,
                    detail,
                })
            })
            .collect()
    }
}
