//! The console through its router (tower `oneshot`): every page, the CSRF
//! guard, escaping of hostile text, filters.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use baton::config::{FileConfig, ServerConfig};
use baton::http::{AppState, router};
use baton::server::Node;
use baton_core::{EventKind, FlowProperties};
use baton_store::{AccountRow, NewRequest, Outcome, SqlStore, VersionRow};
use baton_store::{AccountStore, FlowStore};
use tower::ServiceExt;

struct Console {
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn console() -> Console {
    console_at(None).await
}

/// A console whose configured public URL is `public_url`.
async fn console_at(public_url: Option<&str>) -> Console {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::resolve(
        FileConfig::default(),
        FileConfig {
            data: Some(dir.path().to_owned()),
            database: Some(
                "postgres://baton:secret@db/baton?sslmode=require&password=hunter2".into(),
            ),
            name: Some("blue".into()),
            public_url: public_url.map(str::to_owned),
            ..Default::default()
        },
    );
    let url = format!("sqlite://{}", dir.path().join("baton.db").display());
    let store = SqlStore::connect(&url, &dir.path().join("store"))
        .await
        .unwrap();
    let node = Node::start(
        std::sync::Arc::new(store.clone()),
        config,
        "console-test".into(),
        None,
        "127.0.0.1:1".into(),
    )
    .await
    .unwrap();
    let properties = FlowProperties {
        name: "f".into(),
        other_server_retry: true,
        begin_checkpoint: true,
        max_retries: 3,
        retry_interval_ms: 10_000,
        backoff_factor: 1.0,
        max_retry_interval_ms: None,
        resources: vec!["http://127.0.0.1:9000".into()],
        retention_ms: None,
    };
    store
        .deploy(&VersionRow {
            hash: "v1".into(),
            flow: "f".into(),
            size: 1,
            properties,
            deployed_at: 0,
        })
        .await
        .unwrap();
    baton::http::credentials::bootstrap(&store, dir.path())
        .await
        .unwrap();
    let session = baton::http::credentials::secret_hash("admin-session");
    store
        .create_session(&session, "admin", 60_000)
        .await
        .unwrap();
    let watcher = AccountRow {
        name: "watcher".into(),
        password_hash: baton::http::credentials::hash_password("pw"),
        role: "viewer".into(),
    };
    store.create_account(&watcher).await.unwrap();
    let session = baton::http::credentials::secret_hash("viewer-session");
    store
        .create_session(&session, "watcher", 60_000)
        .await
        .unwrap();
    Console {
        state: node.state.clone(),
        _dir: dir,
    }
}

impl Console {
    /// A request that ended with `outcome`.
    async fn request(&self, id: &str, outcome: Outcome) {
        self.child_request(id, None, outcome).await;
    }

    async fn child_request(&self, id: &str, parent: Option<&str>, outcome: Outcome) {
        let store = &self.state.store;
        let new = NewRequest {
            id: id.into(),
            flow: "f".into(),
            version: "v1".into(),
            owner: self.state.cluster.id.clone(),
            incarnation: self.state.cluster.incarnation(),
            input: store
                .put_payload(br#"{"name":"<b>bold</b>"}"#.to_vec())
                .unwrap(),
            other_server_retry: true,
            resume: true,
            idempotency_key: None,
            parent: parent.map(str::to_owned),
            while_active: false,
        };
        let claim = store.create_request(&new, true).await.unwrap().unwrap();
        store.finish(&claim.fence, &outcome).await.unwrap();
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 24).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let request = Request::get(path).header(header::COOKIE, "baton_session=admin-session");
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post_form(
        &self,
        path: &str,
        form: &str,
        cookie: Option<&str>,
        site: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                "sec-fetch-site",
                if site == "viewer" {
                    "same-origin"
                } else {
                    site
                },
            );
        let session = if site == "viewer" {
            "viewer-session"
        } else {
            "admin-session"
        };
        request = match cookie {
            Some(cookie) => request.header(
                header::COOKIE,
                format!("baton_csrf={cookie}; baton_session={session}"),
            ),
            None => request.header(header::COOKIE, format!("baton_session={session}")),
        };
        self.send(request.body(Body::from(form.to_owned())).unwrap())
            .await
    }
}

#[tokio::test]
async fn every_page_renders_with_strict_security_headers() {
    let console = console().await;
    console.request("r1", Outcome::error("boom")).await;
    for (path, expect) in [
        ("/status/servers", "Server List"),
        ("/status/requests", "Status List"),
        ("/status/requests/r1", "Request r1"),
        ("/status/statistics", "Checkpoints"),
        ("/status/version-control", "Version Control"),
        ("/settings/flow", "Settings"),
        ("/settings/accounts", "New account"),
        (
            "/settings/accounts/watcher/delete",
            "Delete the account watcher",
        ),
        ("/account/password", "Current password"),
        ("/flows", "Run f"),
        ("/flows", "http://127.0.0.1:9000 is a loopback address"),
        ("/status/servers/rows", "blue"),
        ("/status/requests/rows", "r1"),
    ] {
        let (status, headers, body) = console.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(body.contains(expect), "{path} lacks {expect:?}: {body}");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(!body.contains("<script>"), "{path} has an inline script");
    }
    let (_, _, settings) = console.get("/settings/flow").await;
    assert!(
        settings.contains("postgres://baton:***@db/baton?sslmode=require&amp;password=***")
            && !settings.contains("secret")
            && !settings.contains("hunter2"),
        "{settings}"
    );
    let (status, headers, _) = console.get("/assets/htmx.min.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript");
    let (status, _, _) = console.get("/status/requests/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A parent's page names the child it waits for (not as an event to
/// send) and lists its children; a child's page links to its parent.
#[tokio::test]
async fn a_parent_and_its_child_link_to_each_other() {
    let console = console().await;
    let far = console.state.store.now_ms().await.unwrap() + 3_600_000;
    console
        .request(
            "p",
            Outcome::Sleeping {
                wake_at_ms: far,
                event: Some("baton:child:c".into()),
            },
        )
        .await;
    console
        .child_request(
            "c",
            Some("p"),
            Outcome::Sleeping {
                wake_at_ms: far,
                event: Some("decision".into()),
            },
        )
        .await;
    let (status, _, page) = console.get("/status/requests/p").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(
            r#"Waiting for its child request <a href="/status/requests/c"><code>c</code></a>"#
        ),
        "{page}"
    );
    assert!(!page.contains("Waiting for the event"), "{page}");
    assert!(!page.contains(r#"value="baton:child:c""#), "{page}");
    let children = page
        .split(r#"<table class="children">"#)
        .nth(1)
        .unwrap_or_default();
    assert!(
        children.contains(r#"<a href="/status/requests/c"><code>c</code></a>"#),
        "{page}"
    );

    let fence = console.state.store.request("c").await.unwrap().unwrap();
    console
        .state
        .store
        .set_status(
            &baton_store::Fence {
                request: "c".into(),
                owner: fence.owner.unwrap(),
                epoch: fence.epoch,
            },
            "reviewer",
            r#""<ada>""#,
        )
        .await
        .unwrap();
    let (status, _, page) = console.get("/status/requests/c").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(
            r#"<td><code>reviewer</code></td><td><code>&quot;&lt;ada&gt;&quot;</code></td>"#
        ),
        "{page}"
    );
    assert!(
        page.contains(r#"<th>Parent</th><td><a href="/status/requests/p"><code>p</code></a>"#),
        "{page}"
    );
    assert!(!page.contains(r#"<table class="children">"#), "{page}");
}

/// A waiting request's page says which event it waits for and has a form
/// to send it, for operators only, same-site with the CSRF token; the event
/// lands in the inbox as sent.
#[tokio::test]
async fn an_operator_sends_the_awaited_event_from_the_request_page() {
    let console = console().await;
    let far = console.state.store.now_ms().await.unwrap() + 3_600_000;
    console
        .request(
            "w",
            Outcome::Sleeping {
                wake_at_ms: far,
                event: Some("approval".into()),
            },
        )
        .await;
    let (status, headers, page) = console.get("/status/requests/w").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Waiting for the event <code>approval</code>"),
        "{page}"
    );
    assert!(
        page.contains(r#"action="/status/requests/w/events""#),
        "{page}"
    );
    assert!(page.contains(r#"value="approval""#), "{page}");
    let token = support::csrf_of(headers[header::SET_COOKIE].to_str().unwrap());
    // The form carries a key of its own, new on every render.
    let key = page
        .split(r#"name="key" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    assert!(key.starts_with("console:"), "{key}");
    let (_, _, again) = console.get("/status/requests/w").await;
    assert!(!again.contains(&key), "a second render has another key");
    let form = format!("csrf={token}&key={key}&name=approval&data=%7B%22ok%22%3Atrue%7D");

    for (site, refused) in [
        ("viewer", StatusCode::FORBIDDEN),
        ("cross-site", StatusCode::FORBIDDEN),
    ] {
        let (status, _, _) = console
            .post_form("/status/requests/w/events", &form, Some(&token), site)
            .await;
        assert_eq!(status, refused, "{site}");
    }
    let bad = format!("csrf={token}&name=approval&data=%7Bnot");
    let (status, _, _) = console
        .post_form(
            "/status/requests/w/events",
            &bad,
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        console
            .state
            .store
            .inbox_event("w", "approval", 0)
            .await
            .unwrap(),
        None
    );

    // Submitted twice (a double click), the form keeps one event.
    for _ in 0..2 {
        let (status, headers, _) = console
            .post_form(
                "/status/requests/w/events",
                &form,
                Some(&token),
                "same-origin",
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/status/requests/w");
    }
    assert_eq!(
        console
            .state
            .store
            .inbox_event("w", "approval", 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        console
            .state
            .store
            .inbox_event("w", "approval", 0)
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"ok":true}"#)
    );
}

/// Hold and resume from the request page and from the Status List, whose
/// Held filter finds what is held; a cross-site form holds nothing.
#[tokio::test]
async fn an_operator_holds_and_resumes_from_the_console() {
    let console = console().await;
    console
        .request(
            "h",
            Outcome::Retry {
                error: "later".into(),
                details: None,
                delay_ms: 60_000,
            },
        )
        .await;
    let (_, headers, page) = console.get("/status/requests/h").await;
    assert!(
        page.contains(r#"action="/status/requests/h/hold""#),
        "{page}"
    );
    assert!(!page.contains(r#"action="/status/requests/h/resume""#));
    let token = support::csrf_of(headers[header::SET_COOKIE].to_str().unwrap());
    let form = format!("csrf={token}");
    let (status, _, _) = console
        .post_form("/status/requests/h/hold", &form, Some(&token), "cross-site")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        !console
            .state
            .store
            .request("h")
            .await
            .unwrap()
            .unwrap()
            .held
    );

    let (status, headers, _) = console
        .post_form(
            "/status/requests/h/hold",
            &form,
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/status/requests/h");
    let (_, _, page) = console.get("/status/requests/h").await;
    assert!(
        page.contains("(held: it does not run until resumed)"),
        "{page}"
    );
    assert!(
        page.contains(r#"action="/status/requests/h/resume""#),
        "{page}"
    );

    let (_, _, held) = console.get("/status/requests?held=yes").await;
    assert!(
        held.contains(r#"data-id="h""#) && held.contains("(held)"),
        "{held}"
    );
    let (_, _, not_held) = console.get("/status/requests?held=no").await;
    assert!(!not_held.contains(r#"data-id="h""#), "{not_held}");
    let (status, _, _) = console.get("/status/requests?held=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _, body) = console
        .post_form(
            "/status/requests/actions",
            &format!("csrf={token}&action=resume&id=h"),
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("h: done"), "{body}");
    assert!(
        !console
            .state
            .store
            .request("h")
            .await
            .unwrap()
            .unwrap()
            .held
    );
}

/// Each checkpoint of the current generation offers a re-execute and a
/// fork from itself; the re-execute starts a generation from there.
#[tokio::test]
async fn a_checkpoint_row_reexecutes_from_itself() {
    use baton_store::CheckpointWrite;
    let console = console().await;
    let store = &console.state.store;
    let new = NewRequest {
        id: "e".into(),
        flow: "f".into(),
        version: "v1".into(),
        owner: console.state.cluster.id.clone(),
        incarnation: console.state.cluster.incarnation(),
        input: store.put_payload(b"{}".to_vec()).unwrap(),
        other_server_retry: true,
        resume: true,
        idempotency_key: None,
        parent: None,
        while_active: false,
    };
    let claim = store.create_request(&new, true).await.unwrap().unwrap();
    for seq in 0..2 {
        let write = CheckpointWrite {
            fence: claim.fence.clone(),
            journal: claim.journal,
            ordinal: claim.appends_at + seq,
            seq,
            name: format!("step-{seq}"),
            payload: store.put_payload(b"1".to_vec()).unwrap(),
        };
        store
            .commit_checkpoints(&[write])
            .await
            .unwrap()
            .remove(0)
            .unwrap();
    }
    store
        .finish(&claim.fence, &Outcome::error("boom"))
        .await
        .unwrap();

    let (_, headers, page) = console.get("/status/requests/e").await;
    for action in ["reexecute", "fork"] {
        assert_eq!(
            page.matches(&format!(r#"action="/status/requests/e/{action}""#))
                .count(),
            // The page's own Re-execute button besides one per checkpoint.
            if action == "reexecute" { 3 } else { 2 },
            "{action}: {page}"
        );
    }
    assert!(
        page.contains(r#"aria-label="Fork a new request from checkpoint 1""#),
        "{page}"
    );
    let token = support::csrf_of(headers[header::SET_COOKIE].to_str().unwrap());
    let (status, _, _) = console
        .post_form(
            "/status/requests/e/fork",
            &format!("csrf={token}&from=x"),
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, headers, _) = console
        .post_form(
            "/status/requests/e/reexecute",
            &format!("csrf={token}&from=1"),
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/status/requests/e");
    let request = store.request("e").await.unwrap().unwrap();
    assert_eq!(request.generation, 1);
    let (_, _, page) = console.get("/status/requests/e").await;
    assert!(page.contains("by admin, from checkpoint 1"), "{page}");
}

/// An admin purges finished requests from Settings: counted first (the
/// form's default), then deleted; a cross-site form deletes nothing.
#[tokio::test]
async fn an_admin_purges_finished_requests_from_the_settings() {
    let console = console().await;
    console.request("old", Outcome::error("boom")).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_, headers, page) = console.get("/settings/flow").await;
    assert!(page.contains(r#"action="/settings/flow/purge""#), "{page}");
    let token = support::csrf_of(headers[header::SET_COOKIE].to_str().unwrap());
    let purge = async |form: &str, site: &str| {
        console
            .post_form(
                "/settings/flow/purge",
                &format!("csrf={token}&{form}"),
                Some(&token),
                site,
            )
            .await
    };
    let (status, _, _) = purge("older_than=0ms", "cross-site").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = purge("older_than=0ms&dry_run=on", "same-origin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Would delete 1 requests and 0 blobs"),
        "{body}"
    );
    assert!(console.state.store.request("old").await.unwrap().is_some());
    let (status, _, body) = purge("older_than=soon", "same-origin").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = purge("older_than=0ms&status=error", "same-origin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Deleted 1 requests and 0 blobs"), "{body}");
    assert!(console.state.store.request("old").await.unwrap().is_none());
}

#[tokio::test]
async fn state_changes_need_a_same_site_form_with_the_csrf_token() {
    let console = console().await;
    console.request("r1", Outcome::error("boom")).await;
    let (_, headers, _) = console.get("/status/requests").await;
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let token = support::csrf_of(cookie);
    // 256 bits from the OS generator.
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );

    let form = format!("csrf={token}");
    let (status, _, _) = console
        .post_form(
            "/status/requests/r1/reexecute",
            "",
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no token in the form");
    let (status, _, _) = console
        .post_form("/status/requests/r1/reexecute", &form, None, "same-origin")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no cookie");
    let (status, _, _) = console
        .post_form(
            "/status/requests/r1/reexecute",
            "csrf=0000",
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "wrong token");
    let (status, _, body) = console
        .post_form(
            "/status/requests/r1/reexecute",
            &form,
            Some(&token),
            "cross-site",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "cross-site");
    assert!(body.contains("another site"));
    assert_eq!(
        console
            .state
            .store
            .request("r1")
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "error",
        "nothing changed"
    );

    let (status, headers, _) = console
        .post_form(
            "/status/requests/r1/reexecute",
            &form,
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/status/requests/r1");
    // The re-execute is recorded with the account (this server's executor
    // may already be retrying the request).
    let events = console.state.store.events("r1", None, 100).await.unwrap();
    let reexecuted = events
        .iter()
        .find(|e| e.kind == EventKind::Reexecuted)
        .expect("a reexecuted event");
    assert_eq!(reexecuted.detail.as_deref(), Some("by admin"));

    // A request waiting a minute for its retry, cancelled from the list.
    console
        .request(
            "r2",
            Outcome::Retry {
                error: "later".into(),
                details: None,
                delay_ms: 60_000,
            },
        )
        .await;

    let (status, _, body) = console
        .post_form(
            "/status/requests/actions",
            &format!("csrf={token}&action=cancel&id=r2&id=nope"),
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("r2: done") && body.contains("nope: request nope not found"),
        "{body}"
    );
    let (status, _, body) = console
        .post_form(
            "/status/requests/r2/cancel",
            &form,
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("already cancelled"), "{body}");

    let (status, _, body) = console
        .post_form(
            "/settings/flow/name",
            &format!("csrf={token}&name=green"),
            Some(&token),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Renamed to green"));
    assert_eq!(
        console
            .state
            .store
            .server("console-test")
            .await
            .unwrap()
            .unwrap()
            .name,
        "green"
    );
}

#[tokio::test]
async fn pages_need_a_login_and_the_api_a_token() {
    let console = console().await;
    let anonymous = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let (status, headers, _) = console.send(anonymous("/status/requests")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    let (status, _, body) = console.send(anonymous("/api/requests")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Bearer"), "{body}");
    for open in ["/healthz", "/metrics", "/login", "/assets/console.css"] {
        let (status, _, _) = console.send(anonymous(open)).await;
        assert_eq!(status, StatusCode::OK, "{open}");
    }
    let token = std::fs::read_to_string(console._dir.path().join("admin.token")).unwrap();
    let with_token = Request::get("/api/requests")
        .header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
    let (status, _, _) = console.send(with_token.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(console._dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // An admin creates an operator and issues it a token; the token works
    // with the operator's powers only.
    let admin = |request: axum::http::request::Builder| {
        request.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()))
    };
    let create = admin(Request::post("/api/accounts"))
        .body(Body::from(
            r#"{"name":"ops","password":"long enough","role":"operator"}"#,
        ))
        .unwrap();
    let (status, _, body) = console.send(create).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body) = console
        .send(
            admin(Request::post("/api/accounts/ops/tokens"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ops_token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_ops = |request: axum::http::request::Builder| {
        request.header(header::AUTHORIZATION, format!("Bearer {ops_token}"))
    };
    let (status, _, _) = console
        .send(
            as_ops(Request::get("/api/requests"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = console
        .send(
            as_ops(Request::post("/api/flows"))
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an operator cannot deploy: {body}"
    );
    let (status, _, _) = console
        .send(
            as_ops(Request::get("/api/accounts"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Logging in with the form sets an HttpOnly, SameSite=Strict session cookie.
    let (_, headers, _) = console.send(anonymous("/login")).await;
    let csrf = support::csrf_of(headers[header::SET_COOKIE].to_str().unwrap());
    let login = |password: &str| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("baton_csrf={csrf}"))
            .body(Body::from(format!(
                "csrf={csrf}&username=watcher&password={password}"
            )))
            .unwrap()
    };
    let (status, _, body) = console.send(login("nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("wrong password"));
    let (status, headers, _) = console.send(login("pw")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let session = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        session.starts_with("baton_session=")
            && session.contains("HttpOnly")
            && session.contains("SameSite=Strict"),
        "{session}"
    );
}

#[tokio::test]
async fn the_api_ignores_the_console_session_cookie() {
    let console = console().await;
    // What a page on another port of the same host can send with the admin's
    // cookies: a no-cors text/plain POST.
    let forged = Request::post("/api/accounts")
        .header(header::COOKIE, "baton_session=admin-session")
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::ORIGIN, "http://127.0.0.1:3000")
        .header("sec-fetch-site", "same-site")
        .body(Body::from(
            r#"{"name":"intruder","password":"long enough","role":"admin"}"#,
        ))
        .unwrap();
    let (status, _, body) = console.send(forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = console.get("/api/requests").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let token = std::fs::read_to_string(console._dir.path().join("admin.token")).unwrap();
    let list = Request::get("/api/accounts")
        .header(header::AUTHORIZATION, format!("Bearer {}", token.trim()))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = console.send(list).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("watcher") && !body.contains("intruder"),
        "{body}"
    );
}

#[tokio::test]
async fn over_https_the_cookies_are_secure_and_host_only() {
    let console = console_at(Some("https://baton.example.com")).await;
    let (_, headers, _) = console
        .send(Request::get("/login").body(Body::empty()).unwrap())
        .await;
    let set = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.starts_with("__Host-baton_csrf=") && set.contains("; Secure") && set.contains("Path=/"),
        "{set}"
    );
    let csrf = set
        .trim_start_matches("__Host-baton_csrf=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let login = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("__Host-baton_csrf={csrf}"))
        .body(Body::from(format!(
            "csrf={csrf}&username=watcher&password=pw"
        )))
        .unwrap();
    let (status, headers, body) = console.send(login).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let set = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.starts_with("__Host-baton_session=") && set.contains("; Secure"),
        "{set}"
    );
    let session = set
        .trim_start_matches("__Host-baton_session=")
        .split(';')
        .next()
        .unwrap();
    let page = |cookie: String| {
        Request::get("/status/requests")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, _) = console
        .send(page(format!("__Host-baton_session={session}")))
        .await;
    assert_eq!(status, StatusCode::OK);
    // A cookie without the prefix, which any subdomain could plant, is not read.
    let (status, _, _) = console.send(page(format!("baton_session={session}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn hostile_text_is_escaped_everywhere() {
    let console = console().await;
    let store = &console.state.store;
    let hostile = r#"<script>alert(1)</script><img src=x onerror=alert(2)>"#;
    let output = store
        .put_payload(serde_json::to_vec(&serde_json::json!({ "html": hostile })).unwrap())
        .unwrap();
    console.request("ok", Outcome::Succeeded(output)).await;
    console.request("bad", Outcome::error(hostile)).await;
    store
        .rename_server("console-test", hostile, "admin")
        .await
        .unwrap();
    // A name the account rules would refuse, written to the store directly.
    store
        .create_account(&AccountRow {
            name: hostile.into(),
            password_hash: "x".into(),
            role: "viewer".into(),
        })
        .await
        .unwrap();
    for path in [
        "/status/requests/ok",
        "/status/requests/bad",
        "/status/requests",
        "/status/servers",
        "/settings/flow",
        "/settings/accounts",
    ] {
        let (status, _, body) = console.get(path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !body.contains("<script>alert") && !body.contains("<img src=x"),
            "{path} renders raw markup: {body}"
        );
        assert!(body.contains("&lt;"), "{path}");
    }
    let (_, _, detail) = console.get("/status/requests/ok").await;
    assert!(
        detail.contains("&lt;b&gt;bold&lt;/b&gt;"),
        "the input preview is escaped"
    );
}

#[tokio::test]
async fn the_status_list_filters_and_pages() {
    let console = console().await;
    for i in 0..60 {
        let outcome = if i % 2 == 0 {
            Outcome::error("e")
        } else {
            Outcome::Retry {
                error: "r".into(),
                details: None,
                delay_ms: 60_000,
            }
        };
        console.request(&format!("req-{i:02}"), outcome).await;
    }
    let (_, _, errors) = console.get("/status/requests/rows?status=error").await;
    assert_eq!(errors.matches("data-status=\"error\"").count(), 30);
    assert!(!errors.contains("waiting_retry"));
    let (_, _, prefixed) = console.get("/status/requests/rows?id=req-1").await;
    assert_eq!(prefixed.matches("<tr").count(), 10);
    let (_, _, page) = console.get("/status/requests").await;
    assert_eq!(page.matches("class=\"request\"").count(), 50);
    let older = page
        .split("&amp;after=")
        .nth(1)
        .expect("a link to older requests");
    let cursor = older.split('"').next().unwrap();
    let (_, _, second) = console
        .get(&format!("/status/requests?after={cursor}"))
        .await;
    assert_eq!(second.matches("class=\"request\"").count(), 10);
    let (status, _, _) = console.get("/status/requests?status=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The filter's export: every matching request, not a page of them.
    let (_, _, filtered) = console.get("/status/requests?status=error").await;
    assert!(
        filtered.contains(r#"href="/status/requests.csv?status=error""#),
        "{filtered}"
    );
    let (status, headers, csv) = console.get("/status/requests.csv?status=error").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let mut ids: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap())
        .collect();
    ids.sort();
    let expected: Vec<String> = (0..60).step_by(2).map(|i| format!("req-{i:02}")).collect();
    assert_eq!(ids, expected);
    let (_, _, lines) = console.get("/status/requests.jsonl?id=req-1").await;
    assert_eq!(lines.lines().count(), 10);
}

/// A CSRF token the tests put in both the cookie and the form.
const CSRF: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

impl Console {
    /// A page as the account whose session secret is `session`.
    async fn get_as(
        &self,
        path: &str,
        session: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let request = Request::get(path).header(header::COOKIE, format!("baton_session={session}"));
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// A same-origin form with a valid CSRF token, as the account whose
    /// session secret is `session`.
    async fn post_as(
        &self,
        path: &str,
        form: &str,
        session: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .header(
                header::COOKIE,
                format!("baton_csrf={CSRF}; baton_session={session}"),
            )
            .body(Body::from(format!("csrf={CSRF}&{form}")))
            .unwrap();
        self.send(request).await
    }

    /// [`Console::post_as`] as the admin.
    async fn admin_post(
        &self,
        path: &str,
        form: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        self.post_as(path, form, "admin-session").await
    }

    /// The status of a login through the form.
    async fn login(&self, username: &str, password: &str) -> StatusCode {
        let request = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("baton_csrf={CSRF}"))
            .body(Body::from(format!(
                "csrf={CSRF}&username={}&password={}",
                username.replace(' ', "+"),
                password.replace(' ', "+")
            )))
            .unwrap();
        self.send(request).await.0
    }

    /// The status of an API call with a bearer token.
    async fn api_with(&self, token: &str) -> StatusCode {
        let request = Request::get("/api/requests")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await.0
    }

    /// A session for a new account of `role`.
    async fn account_with_session(&self, name: &str, role: &str) -> String {
        let store = &self.state.store;
        store
            .create_account(&AccountRow {
                name: name.into(),
                password_hash: baton::http::credentials::hash_password("a long password"),
                role: role.into(),
            })
            .await
            .unwrap();
        let session = format!("{name}-session");
        store
            .create_session(
                &baton::http::credentials::secret_hash(&session),
                name,
                60_000,
            )
            .await
            .unwrap();
        session
    }
}

#[tokio::test]
async fn an_admin_manages_accounts_from_the_console() {
    let console = console().await;
    let store = console.state.store.clone();
    let (status, _, page) = console.get("/settings/accounts").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("Accounts")
            && page.contains("data-name=\"watcher\"")
            && page.contains("data-name=\"admin\""),
        "{page}"
    );
    let (_, _, servers) = console.get("/status/servers").await;
    assert!(
        servers.contains("href=\"/settings/accounts\""),
        "the navigation leads admins to the accounts: {servers}"
    );

    // Created, with the rules the API has.
    for (form, why) in [
        ("name=ops&role=operator&password=short", "a short password"),
        (
            "name=ops&role=root&password=long+enough+1",
            "an unknown role",
        ),
        (
            "name=&role=operator&password=long+enough+1",
            "an empty name",
        ),
        ("name=a%2Fb&role=operator&password=long+enough+1", "a slash"),
    ] {
        let (status, _, body) = console.admin_post("/settings/accounts", form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
    }
    assert!(store.account("ops").await.unwrap().is_none());
    let (status, _, body) = console
        .admin_post(
            "/settings/accounts",
            "name=ops&role=operator&password=first+password",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("data-name=\"ops\""), "{body}");
    assert_eq!(
        store.account("ops").await.unwrap().unwrap().role,
        "operator"
    );
    let (status, _, _) = console
        .admin_post(
            "/settings/accounts",
            "name=ops&role=viewer&password=first+password",
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "the name is taken");
    assert_eq!(
        console.login("ops", "first password").await,
        StatusCode::SEE_OTHER
    );

    // Disabled: no login; enabled again.
    let (status, _, body) = console
        .admin_post("/settings/accounts/ops/disable", "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("data-name=\"ops\" data-role=\"operator\" data-disabled=\"true\""),
        "{body}"
    );
    assert_eq!(
        console.login("ops", "first password").await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, _) = console
        .admin_post("/settings/accounts/ops/enable", "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        console.login("ops", "first password").await,
        StatusCode::SEE_OTHER
    );

    // A reset password replaces the old one.
    let (status, _, _) = console
        .admin_post("/settings/accounts/ops/password", "password=short")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, body) = console
        .admin_post(
            "/settings/accounts/ops/password",
            "password=second+password",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        console.login("ops", "first password").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        console.login("ops", "second password").await,
        StatusCode::SEE_OTHER
    );

    // A new role.
    let (status, _, body) = console
        .admin_post("/settings/accounts/ops/role", "role=viewer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(store.account("ops").await.unwrap().unwrap().role, "viewer");

    // Its tokens revoked, after a confirmation.
    store
        .create_token(
            &baton::http::credentials::secret_hash("ops-token"),
            "ops",
            "test",
            None,
        )
        .await
        .unwrap();
    assert_eq!(console.api_with("ops-token").await, StatusCode::OK);
    let (_, _, page) = console.get("/settings/accounts").await;
    assert!(page.contains("data-tokens=\"1\""), "{page}");
    let (status, _, confirm) = console.get("/settings/accounts/ops/revoke-tokens").await;
    assert_eq!(status, StatusCode::OK, "{confirm}");
    assert!(confirm.contains("name=\"confirm\""), "{confirm}");
    let (status, _, body) = console
        .admin_post("/settings/accounts/ops/revoke-tokens", "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("name=\"confirm\""), "asks again: {body}");
    assert_eq!(
        console.api_with("ops-token").await,
        StatusCode::OK,
        "nothing revoked without the confirmation"
    );
    let (status, _, body) = console
        .admin_post("/settings/accounts/ops/revoke-tokens", "confirm=yes")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        console.api_with("ops-token").await,
        StatusCode::UNAUTHORIZED
    );

    // Deleted, after a confirmation.
    let (status, _, confirm) = console.get("/settings/accounts/ops/delete").await;
    assert_eq!(status, StatusCode::OK, "{confirm}");
    let (status, _, _) = console
        .admin_post("/settings/accounts/ops/delete", "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        store.account("ops").await.unwrap().is_some(),
        "not without the confirmation"
    );
    let (status, _, body) = console
        .admin_post("/settings/accounts/ops/delete", "confirm=yes")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.contains("data-name=\"ops\""), "{body}");
    assert_eq!(
        console.login("ops", "second password").await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, _) = console
        .admin_post("/settings/accounts/ops/delete", "confirm=yes")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The admin cannot lock themselves out.
    for action in ["disable", "delete"] {
        let (status, _, body) = console
            .admin_post(&format!("/settings/accounts/admin/{action}"), "confirm=yes")
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {body}");
    }
    let (status, _, _) = console
        .admin_post("/settings/accounts/admin/role", "role=viewer")
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(store.account("admin").await.unwrap().unwrap().role, "admin");
}

#[tokio::test]
async fn account_pages_refuse_viewers_operators_and_cross_site_posts() {
    let console = console().await;
    let store = console.state.store.clone();
    let operator = console.account_with_session("ops", "operator").await;
    for session in ["viewer-session", operator.as_str()] {
        for path in ["/settings/accounts", "/settings/accounts/watcher/delete"] {
            let (status, _, body) = console.get_as(path, session).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{session} GET {path}: {body}"
            );
        }
        let (_, _, page) = console.get_as("/status/servers", session).await;
        assert!(
            !page.contains("/settings/accounts"),
            "no Accounts entry for {session}"
        );
        for (path, form) in [
            (
                "/settings/accounts",
                "name=sneaky&role=admin&password=long+enough+1",
            ),
            ("/settings/accounts/watcher/disable", ""),
            (
                "/settings/accounts/watcher/password",
                "password=long+enough+1",
            ),
            ("/settings/accounts/watcher/role", "role=admin"),
            ("/settings/accounts/watcher/revoke-tokens", "confirm=yes"),
            ("/settings/accounts/watcher/delete", "confirm=yes"),
        ] {
            let (status, _, body) = console.post_as(path, form, session).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{session} POST {path}: {body}"
            );
        }
    }
    assert!(store.account("sneaky").await.unwrap().is_none());
    assert_eq!(
        store.account("watcher").await.unwrap().unwrap().role,
        "viewer"
    );

    // The admin's own browser, but the form comes from elsewhere.
    let create = format!("csrf={CSRF}&name=sneaky&role=admin&password=long+enough+1");
    let (status, _, body) = console
        .post_form("/settings/accounts", &create, Some(CSRF), "cross-site")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = console
        .post_form("/settings/accounts", &create, Some(CSRF), "same-site")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let foreign = Request::post("/settings/accounts/watcher/delete")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "http://127.0.0.1:3000")
        .header(header::HOST, "127.0.0.1:8080")
        .header(
            header::COOKIE,
            format!("baton_csrf={CSRF}; baton_session=admin-session"),
        )
        .body(Body::from(format!("csrf={CSRF}&confirm=yes")))
        .unwrap();
    let (status, _, _) = console.send(foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = console
        .post_form(
            "/settings/accounts/watcher/delete",
            "confirm=yes",
            Some(CSRF),
            "same-origin",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token in the form");
    let (status, _, _) = console
        .post_form(
            "/account/password",
            "current=pw&password=long+enough+1&password2=long+enough+1",
            None,
            "same-origin",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a password change needs the token too"
    );
    assert!(store.account("sneaky").await.unwrap().is_none());
    assert!(store.account("watcher").await.unwrap().is_some());
}

#[tokio::test]
async fn a_user_changes_their_own_password_in_the_console() {
    let console = console().await;
    let (status, _, page) = console.get_as("/account/password", "viewer-session").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("name=\"current\"") && page.contains("name=\"password2\""),
        "{page}"
    );
    let (_, _, servers) = console.get_as("/status/servers", "viewer-session").await;
    assert!(servers.contains("href=\"/account/password\""), "{servers}");
    for (form, status) in [
        (
            "current=pw&password=new+long+one&password2=another+one",
            StatusCode::BAD_REQUEST,
        ),
        (
            "current=pw&password=short&password2=short",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, _, body) = console
            .post_as("/account/password", form, "viewer-session")
            .await;
        assert_eq!(got, status, "{form}: {body}");
    }
    assert_eq!(console.login("watcher", "pw").await, StatusCode::SEE_OTHER);
    let (status, _, body) = console
        .post_as(
            "/account/password",
            "current=pw&password=new+long+one&password2=new+long+one",
            "viewer-session",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        console.login("watcher", "pw").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        console.login("watcher", "new long one").await,
        StatusCode::SEE_OTHER
    );
    // Its sessions ended with the change.
    let (status, headers, _) = console.get_as("/status/servers", "viewer-session").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
}

#[tokio::test]
async fn wrong_current_passwords_in_the_console_count_as_failed_logins() {
    let console = console().await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let (status, headers, _) = console
            .post_as(
                "/account/password",
                "current=guess&password=new+long+one&password2=new+long+one",
                "viewer-session",
            )
            .await;
        statuses.push(status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            retry_after = headers
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            break;
        }
    }
    assert_eq!(statuses, [403, 403, 403, 403, 403, 403, 429]);
    assert!(
        retry_after.is_some_and(|s| (1..=900).contains(&s)),
        "{retry_after:?}"
    );
    // The right password waits too, here and at /login.
    let (status, _, _) = console
        .post_as(
            "/account/password",
            "current=pw&password=new+long+one&password2=new+long+one",
            "viewer-session",
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        console.login("watcher", "pw").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        console.login("admin", "guess").await,
        StatusCode::UNAUTHORIZED
    );
}
