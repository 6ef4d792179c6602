//! The host calls the SDK makes. Built for `wasm32`, they are the
//! component's imports; built natively they go to the in-memory journal of
//! [`testing`](crate::testing) (feature `testing`), so that a flow's own
//! tests run with `cargo test` and no server.

pub(crate) use crate::bindings::baton::flow::http::{Request, Response};
pub(crate) use crate::bindings::baton::flow::journal::{CheckpointStart, Level};

#[cfg(target_arch = "wasm32")]
mod imports {
    use super::{CheckpointStart, Level, Request, Response};
    use crate::bindings::baton::flow::{http, journal};

    pub(crate) fn begin_checkpoint(name: &str) -> CheckpointStart {
        journal::begin_checkpoint(name)
    }
    pub(crate) fn commit_checkpoint(position: u32, payload: &[u8]) {
        journal::commit_checkpoint(position, payload)
    }
    pub(crate) fn now_ms() -> u64 {
        journal::now_ms()
    }
    pub(crate) fn random_u64() -> u64 {
        journal::random_u64()
    }
    pub(crate) fn sleep_ms(ms: u64) {
        journal::sleep_ms(ms)
    }
    pub(crate) fn wait_event(name: &str, timeout_ms: u64) -> Option<Vec<u8>> {
        journal::wait_event(name, timeout_ms)
    }
    pub(crate) fn set_status(key: &str, value: &[u8]) {
        journal::set_status(key, value)
    }
    pub(crate) fn pause_ms(ms: u64) {
        journal::pause_ms(ms)
    }
    pub(crate) fn start_flow(flow: &str, input: &[u8]) -> Result<String, String> {
        journal::start_flow(flow, input)
    }
    pub(crate) fn wait_child(id: &str) -> Result<Vec<u8>, String> {
        journal::wait_child(id)
    }
    pub(crate) fn log(level: Level, message: &str) {
        journal::log(level, message)
    }
    pub(crate) fn http_send(request: &Request) -> Result<Response, String> {
        http::send(request)
    }
}

#[cfg(all(not(target_arch = "wasm32"), feature = "testing"))]
use crate::testing::journal as imports;

/// Natively, without the harness, there is no journal to call.
#[cfg(all(not(target_arch = "wasm32"), not(feature = "testing")))]
mod imports {
    use super::{CheckpointStart, Level, Request, Response};

    fn no_host() -> ! {
        panic!(
            "a flow runs natively only inside baton_guest::testing \
             (enable the `testing` feature of baton-guest in [dev-dependencies])"
        )
    }
    pub(crate) fn begin_checkpoint(_: &str) -> CheckpointStart {
        no_host()
    }
    pub(crate) fn commit_checkpoint(_: u32, _: &[u8]) {
        no_host()
    }
    pub(crate) fn now_ms() -> u64 {
        no_host()
    }
    pub(crate) fn random_u64() -> u64 {
        no_host()
    }
    pub(crate) fn sleep_ms(_: u64) {
        no_host()
    }
    pub(crate) fn wait_event(_: &str, _: u64) -> Option<Vec<u8>> {
        no_host()
    }
    pub(crate) fn set_status(_: &str, _: &[u8]) {
        no_host()
    }
    pub(crate) fn pause_ms(_: u64) {
        no_host()
    }
    pub(crate) fn start_flow(_: &str, _: &[u8]) -> Result<String, String> {
        no_host()
    }
    pub(crate) fn wait_child(_: &str) -> Result<Vec<u8>, String> {
        no_host()
    }
    pub(crate) fn log(_: Level, _: &str) {
        no_host()
    }
    pub(crate) fn http_send(_: &Request) -> Result<Response, String> {
        no_host()
    }
}

pub(crate) use imports::*;
