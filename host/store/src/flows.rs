//! Flow versions (content-hashed components) and each flow's active version.

use baton_core::FlowProperties;
use sqlx::Connection;
use sqlx::any::AnyRow;

use baton_core::store::async_trait;

use crate::{Db, FlowRow, FlowStore, SqlStore, StoreError, VersionRow};

const VERSION_COLUMNS: &str = "v.hash, v.flow, v.size, v.properties, v.deployed_at";

/// A version as read: its properties are parsed here, and a version whose
/// stored properties cannot be read is an error, not a flow with defaults.
fn version_row(row: &AnyRow) -> Result<VersionRow, StoreError> {
    use sqlx::Row;
    let hash: String = row.try_get("hash").db()?;
    let properties = FlowProperties::from_json(&row.try_get::<String, _>("properties").db()?)
        .map_err(|e| StoreError::Unreadable {
            what: format!("version {hash}"),
            reason: e.to_string(),
        })?;
    Ok(VersionRow {
        flow: row.try_get("flow").db()?,
        size: row.try_get("size").db()?,
        deployed_at: row.try_get("deployed_at").db()?,
        hash,
        properties,
    })
}

#[async_trait]
impl FlowStore for SqlStore {
    async fn deploy(&self, version: &VersionRow) -> Result<Option<String>, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.db()?;
        sqlx::query(&self.sql(
            "INSERT INTO flow_versions (hash, flow, size, properties, deployed_at)
             VALUES ($1, $2, $3, $4, NOW_MS) ON CONFLICT (hash) DO NOTHING",
        ))
        .bind(&version.hash)
        .bind(&version.flow)
        .bind(version.size)
        .bind(version.properties.to_json())
        .execute(&mut *tx)
        .await
        .db()?;
        let previous: Option<(String,)> =
            sqlx::query_as("SELECT active_version FROM flows WHERE name = $1")
                .bind(&version.flow)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        sqlx::query(&self.sql(
            "INSERT INTO flows (name, active_version, updated_at) VALUES ($1, $2, NOW_MS)
             ON CONFLICT (name) DO UPDATE SET active_version = $2, updated_at = NOW_MS",
        ))
        .bind(&version.flow)
        .bind(&version.hash)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(previous.map(|(hash,)| hash))
    }

    async fn flows(&self) -> Result<Vec<FlowRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT f.name, f.updated_at, {VERSION_COLUMNS}
               FROM flows f JOIN flow_versions v ON v.hash = f.active_version ORDER BY f.name"
        ))
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter()
            .map(|row| {
                use sqlx::Row;
                Ok(FlowRow {
                    name: row.try_get("name").db()?,
                    updated_at: row.try_get("updated_at").db()?,
                    active: version_row(row)?,
                })
            })
            .collect()
    }

    async fn active_version(&self, flow: &str) -> Result<Option<VersionRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS}
               FROM flows f JOIN flow_versions v ON v.hash = f.active_version WHERE f.name = $1"
        ))
        .bind(flow)
        .fetch_optional(&self.pool)
        .await
        .db()?
        .as_ref()
        .map(version_row)
        .transpose()
    }

    async fn version(&self, hash: &str) -> Result<Option<VersionRow>, StoreError> {
        if let Some(known) = self.versions.lock().expect("versions lock").get(hash) {
            return Ok(Some(known.clone()));
        }
        let version = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM flow_versions v WHERE v.hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .db()?
        .as_ref()
        .map(version_row)
        .transpose()?;
        if let Some(version) = &version {
            self.versions
                .lock()
                .expect("versions lock")
                .insert(hash.to_owned(), version.clone());
        }
        Ok(version)
    }

    async fn versions(&self, flow: &str) -> Result<Vec<VersionRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM flow_versions v
              WHERE v.flow = $1 ORDER BY v.deployed_at DESC"
        ))
        .bind(flow)
        .fetch_all(&self.pool)
        .await
        .db()?
        .iter()
        .map(version_row)
        .collect()
    }
}
