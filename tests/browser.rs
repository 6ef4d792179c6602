//! The console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `.ci/run`): log in, watch a killed server
//! turn red on the Server List, find an errored request on the Status List,
//! re-execute it and see it succeed; then create and delete an account on
//! Settings › Accounts. Screenshots go to `tests/artifacts/`. And every
//! console page passes axe-core.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::{ADMIN_PASSWORD, Server, Setup, Sidecar, wasm};

const LONG: Duration = Duration::from_secs(60);

/// A chromedriver process on a free port.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that the browsers it starts go with it
        // even when a failing test never closes its session.
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed; .ci/run installs it");
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
        {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot reach chromedriver: {e}"),
        }
    }
}

async fn screenshot(client: &Client, name: &str) {
    let dir = support::root().join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Waits until `css` matches an element (the page refreshes itself).
async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    let deadline = Instant::now() + LONG;
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            return element;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never appeared on {}",
            client.current_url().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the text of `css` contains `needle` and returns that text.
/// A page that is still being replaced (a form posted) answers with a
/// stale element or the old text; both are waited out.
async fn wait_for_text(client: &Client, css: &str, needle: &str) -> String {
    let deadline = Instant::now() + LONG;
    loop {
        let text = match client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in {css} on {}: {text}",
            client.current_url().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fills in and sends the login form the client is on, as `admin`.
async fn log_in_as_admin(client: &Client) {
    client
        .find(Locator::Css("input[name=username]"))
        .await
        .unwrap()
        .send_keys("admin")
        .await
        .unwrap();
    client
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(ADMIN_PASSWORD)
        .await
        .unwrap();
    client
        .find(Locator::Css("form[action='/login'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_a_failover_and_reexecutes_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::postgres(dir.path());
    let first = Server::start(dir.path(), "alpha", &setup).await;
    let mut second = Server::start(dir.path(), "bravo", &setup).await;
    first.deploy(wasm("steps")).await;
    let sidecar = Sidecar::start().await;
    sidecar.fail("/step/1", 3);
    let failed = first
        .start_request("steps", json!({ "steps": 3, "url": sidecar.url }))
        .await;
    first.wait_final(&failed, LONG).await;

    let driver = Driver::start();
    let client = browser(&driver, &dir.path().join("chromium")).await;

    client
        .goto(&format!("{}/status/servers", first.base))
        .await
        .unwrap();
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/login"),
        "the console asks for a login"
    );
    log_in_as_admin(&client).await;
    wait_for(
        &client,
        "tr.server[data-status=running] + tr.server[data-status=running]",
    )
    .await;
    let shown = Instant::now();
    let rows = client.find_all(Locator::Css("tr.server")).await.unwrap();
    assert_eq!(rows.len(), 2);
    screenshot(&client, "servers-both-running").await;

    // Kill one: the live Server List turns its row red without a reload,
    // pushed: its fallback poll comes only 30 s after the page loaded.
    second.kill();
    wait_for(&client, "tr.server[data-status=terminated]").await;
    assert!(
        shown.elapsed() < Duration::from_secs(25),
        "the change came with the fallback poll, not pushed: {:?}",
        shown.elapsed()
    );
    // Rows are read by a selector each time: the live feed replaces them.
    let name = wait_for_text(
        &client,
        "tr.server[data-status=terminated] td.name",
        "bravo",
    )
    .await;
    assert_eq!(name, "bravo");
    screenshot(&client, "servers-one-terminated").await;

    // The errored request, re-executed from the Status List.
    client
        .goto(&format!("{}/status/requests?status=error", first.base))
        .await
        .unwrap();
    wait_for(
        &client,
        &format!("tr.request[data-id='{failed}'][data-status=error]"),
    )
    .await;
    // The row may be replaced by the live feed meanwhile; its checkbox is
    // kept across the swap (`hx-preserve`), so it is found by its id.
    client
        .find(Locator::Id(&format!("select-{failed}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    screenshot(&client, "requests-error-selected").await;
    client
        .find(Locator::Css("button[value=reexecute]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&client, "main", &format!("{failed}: done")).await;

    client
        .goto(&format!("{}/status/requests", first.base))
        .await
        .unwrap();
    wait_for(
        &client,
        &format!("tr.request[data-id='{failed}'][data-status=succeeded]"),
    )
    .await;
    screenshot(&client, "requests-reexecuted-succeeded").await;
    client
        .goto(&format!("{}/status/requests/{failed}", first.base))
        .await
        .unwrap();
    let detail = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        detail.contains("reexecuted") && detail.contains("by admin"),
        "{detail}"
    );
    assert!(
        client
            .find(Locator::Css("svg.timeline circle.checkpoint"))
            .await
            .is_ok()
    );
    screenshot(&client, "request-detail").await;

    // A request's page follows it without a reload (it has no poll): a
    // sleeper shown running is shown succeeded once it wakes and ends.
    let sleeper = first
        .start_request("steps", json!({ "steps": 2, "sleep_ms": 4000 }))
        .await;
    client
        .goto(&format!("{}/status/requests/{sleeper}", first.base))
        .await
        .unwrap();
    wait_for(&client, "tbody#summary td.running").await;
    wait_for(&client, "tbody#summary td.succeeded").await;

    // Settings › Accounts: the admin creates an operator, then deletes it
    // after ticking the confirmation.
    client
        .find(Locator::Css("nav a[href='/settings/accounts']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&client, "tr.account[data-name=admin]").await;
    for (field, value) in [("name", "ops"), ("password", "a long password")] {
        client
            .find(Locator::Css(&format!(
                "form.new-account input[name={field}]"
            )))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    client
        .find(Locator::Css(
            "form.new-account select[name=role] option[value=operator]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css("form.new-account button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&client, "tr.account[data-name=ops][data-role=operator]").await;
    screenshot(&client, "accounts-created").await;
    client
        .find(Locator::Css("tr.account[data-name=ops] a.delete"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&client, "form.confirm input[name=confirm]")
        .await
        .click()
        .await
        .unwrap();
    screenshot(&client, "accounts-confirm-delete").await;
    client
        .find(Locator::Css("form.confirm button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&client, "main", "Deleted ops").await;
    assert!(
        client
            .find(Locator::Css("tr.account[data-name=ops]"))
            .await
            .is_err()
    );
    client.close().await.unwrap();
}

/// axe-core (vendored in `tests/vendor`, never served) run on every console
/// page, logged in as an admin, with a request of each kind the pages show:
/// no violation of its WCAG 2.x A/AA rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_page_passes_axe() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "solo", &Setup::sqlite(dir.path())).await;
    server.deploy(wasm("approval")).await;
    server.deploy(wasm("review")).await;
    server.deploy(wasm("hello")).await;
    let parent = server
        .start_request("approval", json!({ "subject": "a", "reviewers": ["ada"] }))
        .await;
    let child = server
        .wait_request(&parent, LONG, |r| {
            r["children"].as_array().is_some_and(|c| c.len() == 1)
        })
        .await["children"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .wait_request(&child, LONG, |r| r["waiting_for"] == "decision")
        .await;
    let done = server
        .start_request("hello", json!({ "name": "Ada" }))
        .await;
    server.wait_final(&done, LONG).await;

    let driver = Driver::start();
    let client = browser(&driver, &dir.path().join("chromium")).await;
    client
        .goto(&format!("{}/login", server.base))
        .await
        .unwrap();
    let axe = std::fs::read_to_string(support::root().join("tests/vendor/axe.min.js")).unwrap();
    let mut violations = Vec::new();
    let mut check = async |page: &str| {
        client
            .goto(&format!("{}{page}", server.base))
            .await
            .unwrap();
        client.execute(&axe, vec![]).await.unwrap();
        let found = client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] })
                    .then(r => done(r.violations.map(v => v.id + ' ' + v.impact + ': ' +
                        v.nodes.map(n => n.target.join(' ')).join(', '))))
                    .catch(e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .unwrap();
        for violation in found.as_array().unwrap() {
            violations.push(format!("{page}: {}", violation.as_str().unwrap()));
        }
    };
    check("/login").await;
    log_in_as_admin(&client).await;
    wait_for(&client, "main").await;
    for page in [
        "/status/servers".to_owned(),
        "/status/requests".to_owned(),
        format!("/status/requests/{parent}"),
        format!("/status/requests/{child}"),
        format!("/status/requests/{done}"),
        "/status/statistics".to_owned(),
        "/status/version-control".to_owned(),
        "/flows".to_owned(),
        "/settings/flow".to_owned(),
        "/settings/accounts".to_owned(),
        "/account/password".to_owned(),
    ] {
        check(&page).await;
    }
    assert!(violations.is_empty(), "{violations:#?}");
}
