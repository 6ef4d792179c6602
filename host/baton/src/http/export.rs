//! Exports of the requests a filter matches, as CSV or JSON Lines, streamed
//! a keyset page at a time: the API's `/api/requests.csv` and `.jsonl`, and
//! the Status List's export links.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use baton_core::store::{RequestFilter, RequestRow, Store};

use crate::http::api::dto::RequestSummary;

/// How an export writes its rows.
#[derive(Clone, Copy)]
pub enum Export {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

/// The columns of a CSV export, in order.
const CSV_COLUMNS: &str = "id,flow,version,status,held,owner,attempts,last_checkpoint,parent,created_at,updated_at,error\n";

impl Export {
    fn row(self, request: &RequestRow) -> String {
        let summary = RequestSummary::from(request);
        match self {
            Export::JsonLines => {
                let mut line = serde_json::to_string(&summary).expect("a summary serializes");
                line.push('\n');
                line
            }
            Export::Csv => {
                let text = |value: Option<&str>| csv_field(value.unwrap_or_default());
                format!(
                    "{},{},{},{},{},{},{},{},{},{},{},{}\n",
                    text(Some(&summary.id)),
                    text(Some(&summary.flow)),
                    text(Some(&summary.version)),
                    summary.status.as_str(),
                    summary.held,
                    text(summary.owner.as_deref()),
                    summary.attempts,
                    text(summary.last_checkpoint.as_deref()),
                    text(summary.parent.as_deref()),
                    summary.created_at,
                    summary.updated_at,
                    text(summary.error.as_deref()),
                )
            }
        }
    }
}

/// A CSV field: quoted when it holds a separator, a quote or a line
/// break, and kept from being read as a formula by a spreadsheet (a
/// leading `=`, `+`, `-`, `@`, tab or carriage return gets a `'`).
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Rows an export reads per page.
const EXPORT_PAGE: i64 = 1000;

/// Streams every request the filter matches, newest first, a keyset page
/// at a time: millions of rows without holding more than a page. A page
/// that fails ends the stream early; the body is then cut short.
pub fn response(store: Arc<dyn Store>, mut filter: RequestFilter, format: Export) -> Response {
    filter.limit = EXPORT_PAGE;
    filter.after = None;
    let header = match format {
        Export::Csv => Some(CSV_COLUMNS.to_owned()),
        Export::JsonLines => None,
    };
    let pages = futures_util::stream::unfold(
        (store, filter, header, false),
        move |(store, mut filter, header, done)| async move {
            if let Some(header) = header {
                return Some((Ok(header), (store, filter, None, false)));
            }
            if done {
                return None;
            }
            match store.list_requests(&filter).await {
                Err(e) => Some((Err(e), (store, filter, None, true))),
                Ok(rows) => {
                    let last = rows.len() < EXPORT_PAGE as usize;
                    filter.after = rows.last().map(|r| r.id.clone());
                    let chunk: String = rows.iter().map(|r| format.row(r)).collect();
                    let done = last || filter.after.is_none();
                    Some((Ok(chunk), (store, filter, None, done)))
                }
            }
        },
    );
    let content_type = match format {
        Export::Csv => "text/csv; charset=utf-8",
        Export::JsonLines => "application/jsonl",
    };
    (
        [(axum::http::header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(pages),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\nthen"), "\"say \"\"hi\"\"\nthen\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }
}
