//! Flow versions (content-hashed components) and each flow's active version.

use baton_core::FlowProperties;
use sqlx::Connection;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

/// One deployed version of a flow.
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// blake3 of the component bytes; the component is the blob of that hash.
    pub hash: String,
    /// Flow name.
    pub flow: String,
    /// Component size in bytes.
    pub size: i64,
    /// The flow's declared properties, read once here.
    pub properties: FlowProperties,
    /// When it was first deployed.
    pub deployed_at: i64,
}

/// A flow with its active version.
#[derive(Debug, Clone)]
pub struct FlowRow {
    /// Flow name.
    pub name: String,
    /// The active version.
    pub active: VersionRow,
    /// When the active version was switched.
    pub updated_at: i64,
}

const VERSION_COLUMNS: &str = "v.hash, v.flow, v.size, v.properties, v.deployed_at";

/// A version as read: its properties are parsed here, and a version whose
/// stored properties cannot be read is an error, not a flow with defaults.
fn version_row(row: &AnyRow) -> Result<VersionRow, StoreError> {
    use sqlx::Row;
    let hash: String = row.try_get("hash")?;
    let properties =
        FlowProperties::from_json(&row.try_get::<String, _>("properties")?).map_err(|e| {
            StoreError::Unreadable {
                what: format!("version {hash}"),
                reason: e.to_string(),
            }
        })?;
    Ok(VersionRow {
        flow: row.try_get("flow")?,
        size: row.try_get("size")?,
        deployed_at: row.try_get("deployed_at")?,
        hash,
        properties,
    })
}

impl Store {
    /// Records a version (if new) and makes it the flow's active version, in
    /// one transaction. Returns the previously active version.
    pub async fn deploy(&self, version: &VersionRow) -> Result<Option<String>, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        sqlx::query(&self.sql(
            "INSERT INTO flow_versions (hash, flow, size, properties, deployed_at)
             VALUES ($1, $2, $3, $4, NOW_MS) ON CONFLICT (hash) DO NOTHING",
        ))
        .bind(&version.hash)
        .bind(&version.flow)
        .bind(version.size)
        .bind(version.properties.to_json())
        .execute(&mut *tx)
        .await?;
        let previous: Option<(String,)> =
            sqlx::query_as("SELECT active_version FROM flows WHERE name = $1")
                .bind(&version.flow)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(&self.sql(
            "INSERT INTO flows (name, active_version, updated_at) VALUES ($1, $2, NOW_MS)
             ON CONFLICT (name) DO UPDATE SET active_version = $2, updated_at = NOW_MS",
        ))
        .bind(&version.flow)
        .bind(&version.hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(previous.map(|(hash,)| hash))
    }

    /// Every flow with its active version, by name.
    pub async fn flows(&self) -> Result<Vec<FlowRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT f.name, f.updated_at, {VERSION_COLUMNS}
               FROM flows f JOIN flow_versions v ON v.hash = f.active_version ORDER BY f.name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                use sqlx::Row;
                Ok(FlowRow {
                    name: row.try_get("name")?,
                    updated_at: row.try_get("updated_at")?,
                    active: version_row(row)?,
                })
            })
            .collect()
    }

    /// The active version of a flow.
    pub async fn active_version(&self, flow: &str) -> Result<Option<VersionRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS}
               FROM flows f JOIN flow_versions v ON v.hash = f.active_version WHERE f.name = $1"
        ))
        .bind(flow)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(version_row)
        .transpose()
    }

    /// One version by hash.
    pub async fn version(&self, hash: &str) -> Result<Option<VersionRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM flow_versions v WHERE v.hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(version_row)
        .transpose()
    }

    /// Every version of a flow, newest first.
    pub async fn versions(&self, flow: &str) -> Result<Vec<VersionRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM flow_versions v
              WHERE v.flow = $1 ORDER BY v.deployed_at DESC"
        ))
        .bind(flow)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(version_row)
        .collect()
    }
}
